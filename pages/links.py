"""Links: personal participant links as a CSV, and the open Prolific link with its completion code."""

import streamlit as st

from lab.links import MAX_LINKS, LinkError, issued_links, links_csv, make_personal_links, open_link
from lab.settings import load_settings
from lab.studies import get_study
from lab.ui import pick_study, reading, staff_header, writing
from lab.web.guard import page_url, require_role
from lab.web.paths import elsewhere

visitor = require_role("experimenter")
staff_header(visitor)
st.title("Links")
public_url = load_settings().public_url
opened_at = elsewhere(public_url, page_url())
if opened_at is not None:
    st.warning(
        f"These links point at **{public_url}** (`LAB_PUBLIC_URL`), but this page was opened at **{opened_at}**. "
        "If participants reach the lab at another address, their links will not work: set `LAB_PUBLIC_URL` "
        "to that address and restart the lab before making links.",
        icon=":material/warning:",
    )

slug = pick_study()
if slug is None:
    st.stop()
with reading() as s:
    study = get_study(s, slug)
    issued = issued_links(s, study)
if study.status != "open":
    st.warning(f"Version {study.version} is {study.status}: participants can use links only while it is open.")

st.subheader("Personal links")
st.write(
    f"One link per participant. {issued} personal link(s) issued for version {study.version} so far. "
    "Only a hash of each link is stored: **download the file when you make them — they cannot be shown again.**"
)
count = st.number_input("How many links", min_value=1, max_value=MAX_LINKS, value=10, step=1)
if st.button("Make links", type="primary"):
    try:
        with writing() as s:
            fresh = get_study(s, slug)
            made = make_personal_links(s, fresh, int(count))
            st.session_state["links_file"] = (slug, fresh.version, len(made), links_csv(fresh, made))
    except LinkError as e:
        st.error(str(e))
made_file = st.session_state.get("links_file")
if made_file and made_file[0] == slug:
    _, version, n, csv_text = made_file
    st.success(f"{n} new link(s) made for version {version}. Download them now; they will not be shown again.")
    st.download_button(
        f"Download {n} links (CSV)",
        data=csv_text,
        file_name=f"{slug}-v{version}-links.csv",
        mime="text/csv",
        on_click="ignore",
        type="primary",
    )
st.caption(f"On the command line: `python -m lab links {slug} --count N --out links.csv`")

st.subheader("Open Prolific link")
link = open_link(study)
st.write("In Prolific, choose *I'll use URL parameters* and paste this as the study URL; Prolific fills in the three ids.")
st.code(link.url, language=None)
if link.completion_code:
    st.write("Completion code to paste into Prolific (participants are sent back with it at the end):")
    st.code(link.completion_code, language=None)
    st.caption(f"Return URL: {link.completion_url}")
else:
    st.warning("This study sets no completion code: add `completion: {code: …}` to the spec so Prolific can check who finished.")
