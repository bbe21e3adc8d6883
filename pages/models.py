"""Models: a study's models with a one-click connectivity check, before participants meet an error."""

import streamlit as st

from lab.modelcheck import CheckResult, check, study_models
from lab.studies import definition, get_study
from lab.ui import pick_study, reading, staff_header
from lab.web.guard import require_role

visitor = require_role("experimenter")
staff_header(visitor)
st.title("Models")
st.write("Each check sends one tiny message (a few tokens, no retries) and times the answer.")

slug = pick_study()
if slug is None:
    st.stop()
with reading() as s:
    study = get_study(s, slug)
    d = definition(study)


def show(result: CheckResult) -> None:
    """One check's outcome: its latency and the reply, or what to do."""
    if result.ok:
        st.success(f"{result.message} Reply: “{result.reply}”", icon=":material/check_circle:")
    else:
        timing = f" (after {result.latency_ms:,.0f} ms)" if result.latency_ms is not None else ""
        st.error(f"{result.message}{timing}", icon=":material/error:")


results: dict[str, CheckResult] = st.session_state.setdefault("model_checks", {})
check_all = st.button("Check every model", type="primary")
for m in study_models(d):
    key = f"{slug}:{study.version}:{m.key}"
    with st.container(border=True):
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.markdown(f"**{m.key}** · `{m.model}`" + (" · optional" if m.optional else ""))
        c1.caption(("used by " + ", ".join(m.used_by)) if m.used_by else "not used by any condition")
        if m.missing_env:
            c1.caption(f"needs {', '.join(m.missing_env)}, which is not set")
        if c2.button("Check", key=f"check_{key}") or check_all:
            with st.spinner(f"Calling {m.model}…"):
                results[key] = check(m.key, d.spec.models[m.key])
        if key in results:
            show(results[key])
