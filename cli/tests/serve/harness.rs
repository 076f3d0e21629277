//! A real `hearth serve` process on a loopback port, and a minimal HTTP/1.1 client over raw sockets (so tests can also
//! send broken requests and hang up mid-stream).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running server; killed when dropped.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `hearth serve -m MODEL --port 0` plus `extra` (with `-c 1024` unless `extra` sets `-c`) and waits
    /// until it listens.
    pub fn start(model: &str, extra: &[&str]) -> Server {
        let context: &[&str] = if extra.contains(&"-c") { &[] } else { &["-c", "1024"] };
        let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["serve", "-m", model, "--port", "0"])
            .args(context)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hearth serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (found, address) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("http://").nth(1) {
                    let _ = found.send(rest.split("/v1").next().unwrap_or_default().to_owned());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let addr = address
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("the server did not start: {}", log.lock().unwrap()));
        Server { child, addr, log }
    }

    /// Everything the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for `needle` to appear in the server's log.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends a request and reads the whole reply.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut stream = self.send(method, path, headers, body);
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read the reply");
        Reply::parse(&raw)
    }

    /// Sends a request and returns the open connection, for reading a stream piece by piece.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> TcpStream {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        stream
    }

    /// POSTs a JSON body; returns the status and the parsed reply (Null when the body is not JSON).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let reply = self.request("POST", path, &[("Content-Type", "application/json")], &body.to_string());
        (reply.status, reply.json())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP reply.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased.
    pub headers: String,
    /// The body, de-chunked.
    pub body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete header");
        let headers = String::from_utf8_lossy(&raw[..split]).to_lowercase();
        let status = headers
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        let mut body = &raw[split + 4..];
        let text = if headers.contains("transfer-encoding: chunked") {
            let mut out = Vec::new();
            loop {
                let line_end = body.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
                let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16).unwrap();
                if size == 0 {
                    break;
                }
                out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
                body = &body[line_end + 4 + size..];
            }
            out
        } else {
            body.to_vec()
        };
        Reply {
            status,
            headers,
            body: String::from_utf8(text).expect("a UTF-8 body"),
        }
    }

    /// The body as JSON (Null if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `data:` payloads of a server-sent-event body, asserting that every line is one (no comments, no pings).
    pub fn events(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|event| {
                assert!(
                    event.starts_with("data: ") && !event.contains('\n'),
                    "not a single data line: {event:?}"
                );
                event["data: ".len()..].to_owned()
            })
            .collect()
    }
}
