"""Repair Lab: ``streamlit run app.py``.

Imported by the server (not run as the page script), this module defines the ASGI app
with the lab's sign-in routes. Run as the page script for each visit, it resolves who is
visiting and builds the navigation they may use.
"""

import streamlit as st

if __name__ != "__main__":
    from lab.web.routes import routes
    from lab.web.startup import warm_up_in_background

    app = st.App("app.py", routes=routes())
    warm_up_in_background()
else:
    from lab.navigation import hidden_pages, pages_for
    from lab.ui import unavailable_notice
    from lab.web.guard import current_visitor

    # An emoji icon is drawn by the browser itself; a ":material/…:" icon would be fetched
    # from a font server outside the lab on every page load. The layout is set below, once
    # the page is known: two different layouts in one run (centered here, wide in the page)
    # can reach the browser together, and it may then keep the first.
    st.set_page_config(page_title="Repair Lab", page_icon="💬")
    with unavailable_notice():  # a server's first visit migrates the database before anything is shown
        visitor = current_visitor()
    query = st.query_params.to_dict()
    sections, default = pages_for(visitor, query)
    nav = {
        section: [st.Page(p.path, title=p.title, url_path=p.url_path, icon=p.icon, default=p is default) for p in pages]
        for section, pages in sections.items()
    }
    menu = [p for pages in sections.values() for p in pages]
    if default not in menu:
        first = next(iter(nav))
        nav[first].insert(
            0, st.Page(default.path, title=default.title, url_path=default.url_path, default=True, visibility="hidden")
        )
    hidden = hidden_pages(visitor, query)
    for p in hidden:
        nav[next(iter(nav))].append(st.Page(p.path, title=p.title, url_path=p.url_path, icon=p.icon, visibility="hidden"))
    layouts = {p.url_path: p.layout for p in [default, *menu, *hidden]}
    page = st.navigation(nav, position="hidden" if len(menu) == 1 else "top")
    st.set_page_config(layout=layouts.get(page.url_path, "centered"))
    page.run()
