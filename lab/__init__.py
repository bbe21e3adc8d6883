"""Repair Lab: a lab for studies of conversational repair in language models.

The library holds all logic; the Streamlit pages and ``python -m lab`` call it.
"""

__version__ = "0.1.0"
