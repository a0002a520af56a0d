//! What the report's tests need: headless Chromium (Debian's `chromium`) renders the HTML report
//! in `monitor/tests/report_html.rs`; a font so that its screenshot artefact is legible.

use anyhow::Result;

use super::apt_install;

pub fn install() -> Result<()> {
    apt_install(&["chromium", "fonts-dejavu-core"])
}
