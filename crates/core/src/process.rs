//! Running a kind's tool: its output streamed, a tail of it kept.
//!
//! Tools interleave progress on stdout and stderr, so both feed one tail, in the
//! order the lines arrive: on failure that tail is the story of what went wrong.
//! Every kind that runs a process (a command, an installer, the CodeQL CLI) uses
//! this, so `-v`, the terminal progress line and quiet `--json` behave alike.

use std::collections::VecDeque;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::progress::Progress;

/// Lines of output kept to show when the tool fails.
pub const TAIL_LINES: usize = 40;

/// What to do with each line of the tool's output as it arrives.
#[derive(Clone, Debug)]
pub enum Echo {
    /// `-v`: every line on stderr (above the progress display, when there is one).
    Lines(Progress),
    /// A progress display: the latest line, beside the tier's current step.
    Progress(Progress),
    /// `--json`, pipes, `-q`: nothing until it fails.
    Quiet,
}

impl Echo {
    /// Every line at `-v`, else the latest on the tier's progress line when a
    /// display listens (the driver has one only on a terminal outside `--json`
    /// and `-q`), else nothing.
    pub fn choose(verbose: bool, progress: &Progress) -> Echo {
        if verbose {
            Echo::Lines(progress.clone())
        } else if progress.is_on() {
            Echo::Progress(progress.clone())
        } else {
            Echo::Quiet
        }
    }
}

pub struct Finished {
    pub status: ExitStatus,
    pub tail: Vec<String>,
}

/// Spawn `cmd` (stdout and stderr piped), stream its output, and wait for it.
/// `label` prefixes the progress line (`codeql: …`).
pub async fn run(
    mut cmd: tokio::process::Command,
    echo: Echo,
    label: &str,
) -> std::io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let readers = [
        tokio::spawn(drain(
            child.stdout.take(),
            tail.clone(),
            echo.clone(),
            label.to_owned(),
        )),
        tokio::spawn(drain(
            child.stderr.take(),
            tail.clone(),
            echo.clone(),
            label.to_owned(),
        )),
    ];
    let status = child.wait().await?;
    for r in readers {
        let _ = r.await;
    }
    if let Echo::Progress(progress) = &echo {
        progress.message("");
    }
    let tail = tail.lock().expect("tail lock").drain(..).collect();
    Ok(Finished { status, tail })
}

async fn drain(
    stream: Option<impl AsyncRead + Unpin>,
    tail: Arc<Mutex<VecDeque<String>>>,
    echo: Echo,
    label: String,
) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    // Bytes, not `lines()`: output that is not UTF-8 must still be drained, or the
    // tool blocks on a full pipe.
    while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        buf.clear();
        match &echo {
            Echo::Lines(progress) => progress.print(&line),
            // A blank line would hide the last one that said something.
            Echo::Progress(progress) if !line.trim().is_empty() => {
                progress.message(&format!("{label}: {line}"))
            }
            Echo::Progress(_) => {}
            Echo::Quiet => {}
        }
        let mut t = tail.lock().expect("tail lock");
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// The tail as an indented block for an error message.
pub fn show_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return "  | (it printed nothing)".to_owned();
    }
    tail.iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_last_lines_of_both_streams() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(
            "i=0; while [ $i -lt 50 ]; do echo out$i; i=$((i+1)); done; echo last >&2; exit 3",
        );
        let done = run(cmd, Echo::Quiet, "sh").await.unwrap();
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.tail.len(), TAIL_LINES);
        assert!(done.tail.contains(&"last".to_owned()));
        assert!(!done.tail.contains(&"out0".to_owned()));
        assert!(done.tail.contains(&"out49".to_owned()));
    }
}
