"""Studies: the list with status and counts; upload or edit a spec; preview; open, pause, close."""

import pandas as pd
import streamlit as st

from lab.console import STUDIES_DIR, check_spec_text, preview, spec_source
from lab.spec import SpecError, StudyDefinition
from lab.studies import STATUS_CHANGES, StudyError, definition, get_study, list_studies, load_study, set_status
from lab.ui import flash, reading, remember_study, remembered_study, staff_header, writing
from lab.web.guard import require_role

visitor = require_role("experimenter")
st.set_page_config(layout="wide")
staff_header(visitor)

SAVED = {
    "created": "Study '{slug}' created as version {version} ({status}).",
    "unchanged": "The study is identical to version {version}; its text is kept as written.",
    "replaced": "Version {version} updated: it has no participants yet, so it was changed in place.",
    "new-version": (
        "Version {version} created: the previous version has participants, so its spec stays as it was (now superseded)."
    ),
}
ACTIONS = {"open": "Open", "pause": "Pause", "close": "Close"}


def keep_choice(key: str) -> None:
    """Keep the study just chosen in the address (two choosers here: the one changed wins)."""
    remember_study(st.session_state[key])


def act(slug: str, action: str) -> None:
    """Open, pause or close a study (a button callback, so the list below shows the new status)."""
    try:
        with writing() as s:
            study = set_status(s, slug, action)
            st.session_state["studies_msg"] = ("success", f"Study '{slug}' version {study.version} is now {study.status}.")
    except StudyError as e:
        st.session_state["studies_msg"] = ("error", str(e))


def save(d: StudyDefinition, source: str) -> None:
    """Store a validated spec (a new version when the study has data)."""
    with writing() as s:
        result = load_study(s, d, source)
        study = result.study
        st.session_state["studies_msg"] = (
            "success",
            SAVED[result.action].format(slug=study.slug, version=study.version, status=study.status),
        )


def show_problems(e: SpecError) -> None:
    """The validator's messages, one per line, and that nothing was saved."""
    st.error(f"The spec has {len(e.problems)} problem(s); nothing was saved.", icon=":material/error:")
    st.code("\n".join(e.problems), language=None, wrap_lines=True)


def show_preview(d: StudyDefinition, verdict: bool = True) -> None:
    """What a spec creates: plan, conditions and items (with the validator's verdict when ``verdict``)."""
    p = preview(d)
    if verdict:
        st.success(
            f"Valid: study '{p.slug}' with {len(p.conditions)} conditions and {len(p.items)} items.",
            icon=":material/check_circle:",
        )
    for w in p.warnings:
        st.warning(w)
    st.markdown(
        f"**Plan**: {d.spec.plan.design}-subjects, {p.plan_length} item(s) per participant, {p.cells} condition × item cells, "
        f"balance **{p.method.balance}**, order **{p.method.order}**, seed {d.spec.plan.seed}."
    )
    if p.method.note:
        st.info(p.method.note)
    st.markdown("**Conditions**")
    st.dataframe(pd.DataFrame(p.conditions), hide_index=True, width="stretch")
    st.markdown("**Items**")
    st.dataframe(pd.DataFrame(p.items), hide_index=True, width="stretch")


st.title("Studies")
flash("studies_msg")

with reading() as s:
    rows = list_studies(s)
if rows:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "study": r.slug,
                    "version": r.version,
                    "status": r.status,
                    "title": r.title,
                    "participants": r.participants,
                    "completed": r.completed,
                    "conversations": r.sessions,
                }
                for r in rows
            ]
        ),
        hide_index=True,
        width="stretch",
    )
else:
    st.info("No studies yet: upload a spec below.")

manage, upload, edit = st.tabs(["Open, pause, close", "Upload a spec", "Edit a spec"])

with manage:
    if rows:
        slugs = [r.slug for r in rows]
        slug = st.selectbox(
            "Study", slugs, index=remembered_study(slugs), key="manage_slug", on_change=keep_choice, args=("manage_slug",)
        )
        with reading() as s:
            study = get_study(s, slug)
            d = definition(study)
        st.write(f"Version {study.version} is **{study.status}**.")
        cols = st.columns(len(ACTIONS))
        for col, (action, label) in zip(cols, ACTIONS.items(), strict=True):
            col.button(
                label,
                key=f"{action}_{slug}",
                on_click=act,
                args=(slug, action),
                disabled=study.status not in STATUS_CHANGES[action],
                width="stretch",
            )
        st.caption(
            "Opening checks every model first: a study cannot open with a model that fails validation or lacks its API key."
        )
        with st.expander("Preview items and conditions"):
            show_preview(d, verdict=False)

with upload:
    st.write("Upload the spec (YAML) together with its item files (JSONL). Item files not uploaded are looked for in `studies/`.")
    files = st.file_uploader("Spec and item files", type=["yaml", "yml", "jsonl"], accept_multiple_files=True, key="spec_upload")
    if files:
        specs = [f for f in files if f.name.endswith((".yaml", ".yml"))]
        if not specs:
            st.error("Upload the spec file (.yaml) too; only item files are here.")
        else:
            # The uploader keeps every file dropped on it: a fixed spec dropped after a broken
            # one is the one meant, so the newest spec is checked and the older ones named.
            spec_file = specs[-1]
            if len(specs) > 1:
                older = ", ".join(f.name for f in specs[:-1])
                st.info(
                    f"Checking {spec_file.name}, the spec uploaded last; the earlier spec file(s) ({older}) are "
                    "ignored. Remove them from the list with ×.",
                    icon=":material/info:",
                )
            uploads = {f.name: f.getvalue() for f in files if f.name.endswith(".jsonl")}
            try:
                text = spec_file.getvalue().decode("utf-8")
                d = check_spec_text(text, spec_file.name, STUDIES_DIR, uploads)
            except UnicodeDecodeError:
                st.error(f"{spec_file.name}: not UTF-8 text; nothing was saved.")
            except SpecError as e:
                show_problems(e)
            else:
                show_preview(d)
                st.button("Save study", type="primary", on_click=save, args=(d, f"upload:{spec_file.name}"), key="save_upload")

with edit:
    if rows:
        slugs = [r.slug for r in rows]
        slug = st.selectbox(
            "Study", slugs, index=remembered_study(slugs), key="edit_slug", on_change=keep_choice, args=("edit_slug",)
        )
        with reading() as s:
            study = get_study(s, slug)
            source, base_dir = spec_source(study)
        st.caption(
            "Changing a study that has participants creates a new version; the old version and its data stay as they were."
        )
        text = st.text_area("Spec (YAML)", value=source, height=420, key=f"edit_{slug}_{study.spec_sha256[:12]}")
        try:
            d = check_spec_text(text, f"{slug}.yaml", base_dir or STUDIES_DIR)
        except SpecError as e:
            show_problems(e)
        else:
            if d.spec.slug != slug:
                st.warning(f"The slug is now '{d.spec.slug}': saving creates or changes that study, not '{slug}'.")
            if d.sha256() == study.spec_sha256 and text == source:
                st.info("No changes yet.")
            elif d.sha256() == study.spec_sha256:
                st.info("Only comments or layout changed: the study stays the same, its text is kept as written.")
                st.button("Save text", type="primary", on_click=save, args=(d, f"console:{visitor.username}"), key="save_edit")
            else:
                show_preview(d)
                st.button("Save changes", type="primary", on_click=save, args=(d, f"console:{visitor.username}"), key="save_edit")
        st.download_button(
            "Download the spec (YAML)",
            data=source,
            file_name=f"{slug}-v{study.version}.yaml",
            mime="application/yaml",
            on_click="ignore",
            key=f"download_{slug}",
        )
    else:
        st.info("Nothing to edit yet.")
