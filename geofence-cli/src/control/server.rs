//! The daemon's side: binds the socket root-only and answers each connection's one request.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Semaphore;

use super::protocol::{Command, Request, Response, VERSION};
use super::{ControlError, ANSWER_LIMIT, MAX_CONNECTIONS, MAX_REQUEST, REQUEST_TIMEOUT};

/// Threads that answer commands at once; more wait their turn.
const ANSWERING_THREADS: usize = 4;

/// A bound control socket, not yet served.
pub struct Listener {
    path: PathBuf,
    listener: UnixListener,
}

/// The socket while it is served: dropping it removes the socket's file, so the next start
/// finds no stale one.
pub struct Served {
    path: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path`, root-only. Its folder is made (mode 0700) if missing; a socket left by a
/// geofence that died is replaced, but one that answers is another geofence's, and anything
/// else at the path is left alone.
pub fn bind(path: &Path) -> Result<Listener, ControlError> {
    if let Some(folder) = path.parent().filter(|folder| !folder.as_os_str().is_empty() && !folder.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|source| ControlError::Folder { path: folder.to_owned(), source })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(found) if !found.file_type().is_socket() => return Err(ControlError::NotASocket { path: path.to_owned() }),
        Ok(_) if UnixStream::connect(path).is_ok() => return Err(ControlError::InUse { path: path.to_owned() }),
        Ok(_) => std::fs::remove_file(path).map_err(|source| ControlError::Bind { path: path.to_owned(), source })?,
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(source) => return Err(ControlError::Bind { path: path.to_owned(), source }),
    }
    let bind_error = |source| ControlError::Bind { path: path.to_owned(), source };
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(Listener { path: path.to_owned(), listener })
}

/// Serves `listener` from a thread of its own: each request is answered by `answer`.
pub fn serve(
    listener: Listener,
    answer: impl Fn(Command) -> Response + Send + Sync + 'static,
) -> std::io::Result<Served> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(ANSWERING_THREADS)
        .build()?;
    let Listener { path, listener } = listener;
    std::thread::Builder::new().name("control".into()).spawn(move || {
        runtime.block_on(async move {
            match tokio::net::UnixListener::from_std(listener) {
                Ok(listener) => accept(listener, Arc::new(answer)).await,
                Err(error) => log::error!("control socket: cannot serve: {error}"),
            }
        })
    })?;
    Ok(Served { path })
}

async fn accept(listener: tokio::net::UnixListener, answer: Arc<impl Fn(Command) -> Response + Send + Sync + 'static>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                log::warn!("control socket: accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else { continue };
        let answer = Arc::clone(&answer);
        tokio::spawn(async move {
            converse(stream, answer).await;
            drop(permit);
        });
    }
}

/// One connection: a request read within [`REQUEST_TIMEOUT`], an answer within
/// [`ANSWER_LIMIT`], written within [`REQUEST_TIMEOUT`]. A client that is too slow is
/// closed without a reply.
async fn converse(
    mut stream: tokio::net::UnixStream,
    answer: Arc<impl Fn(Command) -> Response + Send + Sync + 'static>,
) {
    let response = match peer_refusal(&stream) {
        Some(refusal) => refusal,
        None => {
            let mut line = Vec::new();
            let mut limited = BufReader::new((&mut stream).take(MAX_REQUEST as u64 + 1));
            let reading = limited.read_until(b'\n', &mut line);
            match tokio::time::timeout(REQUEST_TIMEOUT, reading).await {
                Ok(Ok(_)) => match parse(&line) {
                    Ok(command) => answered(command, answer).await,
                    Err(refusal) => refusal,
                },
                Ok(Err(_)) | Err(_) => return,
            }
        }
    };
    let mut text = serde_json::to_vec(&response).unwrap_or_default();
    text.push(b'\n');
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(&text)).await;
}

/// The socket is root-only by its mode; a peer of another user (the mode changed by hand,
/// say) is refused all the same.
fn peer_refusal(stream: &tokio::net::UnixStream) -> Option<Response> {
    let own = nix::unistd::geteuid().as_raw();
    match stream.peer_cred() {
        Ok(peer) if peer.uid() == own || peer.uid() == 0 => None,
        Ok(peer) => Some(Response::failure(format!("user {} may not control geofence", peer.uid()))),
        Err(error) => Some(Response::failure(format!("cannot tell who is asking: {error}"))),
    }
}

async fn answered(command: Command, answer: Arc<impl Fn(Command) -> Response + Send + Sync + 'static>) -> Response {
    let work = tokio::task::spawn_blocking(move || answer(command));
    match tokio::time::timeout(ANSWER_LIMIT, work).await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => Response::failure("internal error while answering (please report it)"),
        Err(_) => Response::failure(format!("no answer within {} s", ANSWER_LIMIT.as_secs())),
    }
}

/// A request line: its version first, so a client of another version hears which one this
/// daemon speaks rather than why its fields do not fit.
fn parse(line: &[u8]) -> Result<Command, Response> {
    if line.len() > MAX_REQUEST {
        return Err(Response::failure(format!("a request is one line of at most {MAX_REQUEST} bytes")));
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|error| Response::failure(format!("not a request: {error}")))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(version) if version == u64::from(VERSION) => {}
        Some(version) => {
            return Err(Response::failure(format!(
                "this geofence speaks version {VERSION} of the control protocol, not {version}"
            )))
        }
        None => return Err(Response::failure("not a request: it has no version")),
    }
    serde_json::from_value::<Request>(value)
        .map(|request| request.command)
        .map_err(|error| Response::failure(format!("not a request: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(line: &[u8]) -> String {
        parse(line).unwrap_err().error.unwrap()
    }

    #[test]
    fn requests_are_read_version_first_and_refused_with_a_reason() {
        assert_eq!(parse(b"{\"version\":1,\"command\":\"status\"}\n").unwrap(), Command::Status);
        assert_eq!(
            refusal(br#"{"version":2,"command":"status"}"#),
            "this geofence speaks version 1 of the control protocol, not 2"
        );
        assert_eq!(refusal(br#"{"command":"status"}"#), "not a request: it has no version");
        assert!(refusal(b"\xff\xfe garbage").starts_with("not a request: "));
        assert!(refusal(br#"{"version":1,"command":"shutdown"}"#).contains("unknown variant `shutdown`"));
        assert!(refusal(&[b' '; MAX_REQUEST + 1]).contains("at most 4096 bytes"));
    }

    #[test]
    fn a_live_socket_is_not_taken_over_a_stale_one_is_and_a_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/geofence/control.sock");
        let first = bind(&path).unwrap();
        let mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "the folder made for it is root-only");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(bind(&path), Err(ControlError::InUse { .. })));
        drop(first);
        let served =
            serve(bind(&path).expect("a socket nobody listens on is replaced"), |_| Response::failure("no")).unwrap();
        assert!(path.exists());
        drop(served);
        assert!(!path.exists(), "the socket goes when it is no longer served");
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "keep me").unwrap();
        assert!(matches!(bind(&file), Err(ControlError::NotASocket { .. })));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
