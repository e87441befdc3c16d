//! The control socket behind `balancer status` and `balancer reload`: a unix stream socket
//! (mode 0600) per instance, one JSON request line in, one JSON response line out.
//!
//! The daemon's side accepts connections and hands each request, with a reply channel, to the
//! daemon's loop, which owns the data plane, the VRRP instances and the checkers. The client
//! side is blocking std I/O: the commands need no runtime.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream as StdUnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader},
    net::UnixListener,
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

use crate::status::Status;

/// Where the sockets, pid files and dumps of every instance live by default.
pub const RUN_DIR: &str = "/run/balancer";

/// The longest request line accepted.
const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    /// Everything `balancer status` shows.
    Status,
    /// Load and validate the configuration file again and apply the difference.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// `None` when the request succeeded.
    pub error: Option<String>,
    /// What was done (reload), or `None`.
    pub message: Option<String>,
    pub status: Option<Box<Status>>,
}

impl Response {
    #[must_use]
    pub fn error(e: impl Into<String>) -> Self {
        Self {
            error: Some(e.into()),
            message: None,
            status: None,
        }
    }
}

/// A request from the socket, to be answered on `reply`.
pub type Incoming = (Request, oneshot::Sender<Response>);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "instance {instance} already runs: {path} answers (stop it, or give another --instance)"
    )]
    InUse { instance: String, path: PathBuf },
    #[error("no daemon answers on {path} (is `balancer run --instance {instance}` running?)")]
    NotRunning {
        instance: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the daemon sent no valid answer: {message}")]
    Protocol { path: PathBuf, message: String },
}

/// The control socket of `instance` in `run_dir`.
#[must_use]
pub fn socket_path(run_dir: &Path, instance: &str) -> PathBuf {
    run_dir.join(format!("{instance}.sock"))
}

/// The pid file of `instance` in `run_dir`.
#[must_use]
pub fn pid_path(run_dir: &Path, instance: &str) -> PathBuf {
    run_dir.join(format!("{instance}.pid"))
}

/// The bound socket and pid file; dropping it removes both.
pub struct Server {
    socket: PathBuf,
    pid: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
        let _ = std::fs::remove_file(&self.pid);
    }
}

impl Server {
    /// Binds the instance's socket (mode 0600) and writes its pid file, refusing when another
    /// daemon of the same instance answers there. Requests arrive on `requests`.
    ///
    /// # Errors
    /// The directory or socket cannot be made, or the instance already runs.
    pub fn start(
        run_dir: &Path,
        instance: &str,
        requests: mpsc::Sender<Incoming>,
    ) -> Result<Self, ControlError> {
        let io = |path: &Path, what| {
            let path = path.to_path_buf();
            move |source| ControlError::Io { path, what, source }
        };
        std::fs::create_dir_all(run_dir).map_err(io(run_dir, "cannot create the directory"))?;
        let socket = socket_path(run_dir, instance);
        if socket.exists() {
            if StdUnixStream::connect(&socket).is_ok() {
                return Err(ControlError::InUse {
                    instance: instance.to_owned(),
                    path: socket,
                });
            }
            // Left by a daemon that died without cleaning up.
            std::fs::remove_file(&socket).map_err(io(&socket, "cannot remove the stale socket"))?;
        }
        let listener = UnixListener::bind(&socket).map_err(io(&socket, "cannot bind"))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io(&socket, "cannot set the mode"))?;
        let pid = pid_path(run_dir, instance);
        std::fs::write(&pid, format!("{}\n", std::process::id()))
            .map_err(io(&pid, "cannot write the pid file"))?;
        let task = tokio::spawn(accept(listener, requests));
        Ok(Self { socket, pid, task })
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.socket
    }
}

async fn accept(listener: UnixListener, requests: mpsc::Sender<Incoming>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, requests.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(stream: tokio::net::UnixStream, requests: mpsc::Sender<Incoming>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = AsyncBufReader::new(read.take(MAX_REQUEST as u64));
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => Response::error("no request within 5 s"),
        Ok(Err(e)) => Response::error(format!("reading the request: {e}")),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => Response::error(format!(
                "bad request {:?}: {e}; valid: {{\"command\":\"status\"}} or {{\"command\":\"reload\"}}",
                line.trim()
            )),
            Ok(request) => {
                let (tx, rx) = oneshot::channel();
                if requests.send((request, tx)).await.is_err() {
                    Response::error("the daemon is stopping")
                } else {
                    rx.await
                        .unwrap_or_else(|_| Response::error("the daemon is stopping"))
                }
            }
        },
    };
    let mut text = serde_json::to_string(&response)
        .unwrap_or_else(|e| format!("{{\"error\":\"encoding the response: {e}\"}}"));
    text.push('\n');
    let _ = write.write_all(text.as_bytes()).await;
}

/// Sends one request to the daemon of `instance` and returns its answer.
///
/// # Errors
/// Nobody answers on the socket, or the answer is not a response.
pub fn request(
    run_dir: &Path,
    instance: &str,
    request: Request,
    timeout: Duration,
) -> Result<Response, ControlError> {
    let path = socket_path(run_dir, instance);
    let not_running = |source| ControlError::NotRunning {
        instance: instance.to_owned(),
        path: path.clone(),
        source,
    };
    let mut stream = StdUnixStream::connect(&path).map_err(not_running)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(not_running)?;
    let mut line = serde_json::to_string(&request).unwrap_or_default();
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(not_running)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| ControlError::Protocol {
            path: path.clone(),
            message: e.to_string(),
        })?;
    serde_json::from_str(answer.trim()).map_err(|e| ControlError::Protocol {
        path: path.clone(),
        message: format!("{e} in {:?}", answer.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "balancer-control-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A daemon loop that answers status with its instance name and refuses reloads.
    fn answer(mut rx: mpsc::Receiver<Incoming>) -> JoinHandle<()> {
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(match request {
                    Request::Status => Response {
                        error: None,
                        message: None,
                        status: Some(Box::new(Status {
                            instance: "lab".into(),
                            generation: 7,
                            ..Status::default()
                        })),
                    },
                    Request::Reload => Response::error("bad config"),
                });
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_reach_the_daemon_and_answers_come_back() {
        let dir = temp_dir("rr");
        let (tx, rx) = mpsc::channel(4);
        let server = Server::start(&dir, "lab", tx).unwrap();
        let _loop = answer(rx);
        let mode = std::fs::metadata(server.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pid = std::fs::read_to_string(pid_path(&dir, "lab")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());

        let d = dir.clone();
        let status = tokio::task::spawn_blocking(move || {
            request(&d, "lab", Request::Status, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(status.error, None);
        assert_eq!(status.status.unwrap().generation, 7);
        let d = dir.clone();
        let reload = tokio::task::spawn_blocking(move || {
            request(&d, "lab", Request::Reload, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(reload.error.as_deref(), Some("bad config"));

        // A second daemon of the same instance is refused while the first answers.
        let (tx2, _rx2) = mpsc::channel(1);
        assert!(matches!(
            Server::start(&dir, "lab", tx2),
            Err(ControlError::InUse { .. })
        ));
        drop(server);
        assert!(!socket_path(&dir, "lab").exists());
        assert!(!pid_path(&dir, "lab").exists());
        let d = dir.clone();
        let gone = tokio::task::spawn_blocking(move || {
            request(&d, "lab", Request::Status, Duration::from_secs(1))
        })
        .await
        .unwrap();
        assert!(matches!(gone, Err(ControlError::NotRunning { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stale_socket_is_replaced_and_bad_requests_are_explained() {
        let dir = temp_dir("stale");
        // A socket file nobody listens on, as a killed daemon leaves it.
        drop(std::os::unix::net::UnixListener::bind(socket_path(&dir, "lab")).unwrap());
        let (tx, rx) = mpsc::channel(4);
        let server = Server::start(&dir, "lab", tx).unwrap();
        let _loop = answer(rx);
        let path = server.path().to_path_buf();
        let answer = tokio::task::spawn_blocking(move || {
            let mut s = StdUnixStream::connect(&path).unwrap();
            s.write_all(b"{\"command\":\"restart\"}\n").unwrap();
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line).unwrap();
            serde_json::from_str::<Response>(&line).unwrap()
        })
        .await
        .unwrap();
        let error = answer.error.unwrap();
        assert!(error.contains("restart"), "{error}");
        assert!(error.contains("\"reload\""), "{error}");
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
