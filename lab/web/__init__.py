"""The lab on the web: who is visiting, the page guard, and the sign-in routes.

- :mod:`lab.web.visitor`: the visitor and their role, from the signed staff cookie.
- :mod:`lab.web.guard`: inside a Streamlit page, the visitor of the page session and
  :func:`~lab.web.guard.require_role`, which every staff page calls at its top.
- :mod:`lab.web.routes`: the plain HTTP routes beside Streamlit that sign staff in and out
  and create the first admin; their pages are rendered from ``templates/``.
- :mod:`lab.web.limits`: how many failed sign-ins an account and an address may make.
- :mod:`lab.web.setup_token`: the one-time link that creates the first admin.
- :mod:`lab.web.paths`: where a visitor is sent, and the sign-in link.
- :mod:`lab.web.startup`: what a server process does once after it starts (a warm-up model
  call, then the heap moved out of the garbage collector's sight).

Only :mod:`lab.web.guard` imports Streamlit (with :mod:`lab.ui`); everything else here is
plain Python, tested without a browser. Nothing in this package imports the package back:
it imports the domain (``lab.accounts``, ``lab.db``, ``lab.navigation``), never the reverse.
"""
