//! A local HTTP server on loopback for `geofence update`'s tests (tiny_http): each path gets a
//! reply, including the ways a download goes wrong. Nothing leaves the machine.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a path answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and ETag; 304 to a request that names the ETag.
    Body { bytes: Vec<u8>, etag: &'static str },
    /// This status, no body.
    Status(u16),
    /// This status and this body (an API's "nothing new", say).
    Answer(u16, Vec<u8>),
    /// Nothing, for a minute.
    Stall,
}

/// A request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }
}

pub struct HttpServer {
    port: u16,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let (replies, seen) = (Arc::new(Mutex::new(HashMap::new())), Arc::new(Mutex::new(Vec::new())));
        let (serving, answers, log) = (Arc::clone(&server), Arc::clone(&replies), Arc::clone(&seen));
        std::thread::spawn(move || {
            for request in serving.incoming_requests() {
                let reply = answers.lock().unwrap().get(request.url()).cloned();
                let log = Arc::clone(&log);
                std::thread::spawn(move || respond(request, reply, &log));
            }
        });
        HttpServer { port, replies, seen, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The address and port, as a GeoIP.conf `Host` names it.
    pub fn host(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn serve(&self, path: &str, reply: Reply) {
        self.replies.lock().unwrap().insert(path.to_owned(), reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn respond(request: tiny_http::Request, reply: Option<Reply>, log: &Mutex<Vec<Seen>>) {
    let headers = request.headers().iter().map(|h| (h.field.to_string(), h.value.to_string())).collect();
    let seen = Seen { url: request.url().to_owned(), headers };
    log.lock().unwrap().push(seen.clone());
    let header = |name: &str, value: &str| tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap();
    let _ = match reply {
        None => request.respond(tiny_http::Response::empty(404)),
        Some(Reply::Status(status)) => request.respond(tiny_http::Response::empty(status)),
        Some(Reply::Answer(status, bytes)) => {
            request.respond(tiny_http::Response::from_data(bytes).with_status_code(status))
        }
        Some(Reply::Body { etag, .. }) if seen.header("If-None-Match") == Some(etag) => {
            request.respond(tiny_http::Response::empty(304))
        }
        Some(Reply::Body { bytes, etag }) => {
            request.respond(tiny_http::Response::from_data(bytes).with_header(header("ETag", etag)))
        }
        Some(Reply::Stall) => {
            std::thread::sleep(Duration::from_secs(60));
            request.respond(tiny_http::Response::empty(200))
        }
    };
}

/// A server of one connection that promises twice the bytes it sends, then closes: a download
/// cut short. tiny_http keeps a connection open after a short body (a stall, not a cut), so
/// this one writes its few bytes by hand. Returns its URL.
pub fn cut_short(bytes: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cut.csv.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut head = Vec::new();
        let mut byte = [0];
        while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let promise = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", bytes.len() * 2);
        let _ = stream.write_all(promise.as_bytes()).and_then(|()| stream.write_all(&bytes));
    });
    url
}
