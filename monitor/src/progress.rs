//! The progress bar of long reads (`mxcert read` of captures, `mxcert report` of records): bytes
//! done, rate and time left, on stderr. Callers decide when to show one (a terminal, a large
//! input).

/// A bar over `len` bytes, labelled `message`.
pub fn bytes_bar(len: u64, message: String) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
