//! The client's side: one request, one reply.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Command, Reloaded, Request, Response, VERSION};
use super::{ControlError, ANSWER_LIMIT};

/// The longest reply read: a status or a ban listing is far smaller.
const MAX_REPLY: u64 = 16 << 20;

/// Asks the geofence on `socket` to carry out `command`, and returns its result.
pub fn ask(socket: &Path, command: Command) -> Result<serde_json::Value, ControlError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
        ErrorKind::PermissionDenied => ControlError::NotAllowed { path: socket.to_owned() },
        _ => ControlError::NotRunning { path: socket.to_owned(), source },
    })?;
    let no_answer = |source| ControlError::NoAnswer { path: socket.to_owned(), source };
    // The daemon gives up at ANSWER_LIMIT; the client waits a little longer to hear it say so.
    stream.set_read_timeout(Some(ANSWER_LIMIT + Duration::from_secs(5))).map_err(no_answer)?;
    stream.set_write_timeout(Some(Duration::from_secs(5))).map_err(no_answer)?;
    let mut line = serde_json::to_vec(&Request { version: VERSION, command }).unwrap_or_default();
    line.push(b'\n');
    stream.write_all(&line).map_err(no_answer)?;
    let mut reply = Vec::new();
    stream.take(MAX_REPLY).read_to_end(&mut reply).map_err(no_answer)?;
    let bad = |problem: String| ControlError::BadAnswer { path: socket.to_owned(), problem };
    if reply.is_empty() {
        return Err(bad("it closed the connection without a reply".into()));
    }
    let response: Response = serde_json::from_slice(&reply).map_err(|error| bad(error.to_string()))?;
    if response.version != VERSION {
        return Err(bad(format!("version {} of the control protocol, not {VERSION}", response.version)));
    }
    match response {
        Response { ok: true, result: Some(result), .. } => Ok(result),
        Response { ok: false, error: Some(error), .. } => Err(ControlError::Refused(error)),
        _ => Err(bad("a reply with neither a result nor an error".into())),
    }
}

/// Asks the geofence on `socket` to reload its files, and returns what it said of the reload.
pub fn ask_reload(socket: &Path) -> Result<Reloaded, ControlError> {
    let answer = ask(socket, Command::Reload)?;
    serde_json::from_value(answer)
        .map_err(|error| ControlError::BadAnswer { path: socket.to_owned(), problem: error.to_string() })
}
