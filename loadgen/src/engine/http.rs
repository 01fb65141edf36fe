//! The REST side of a virtual user: a lean HTTP/1.1 client (hyper's connection API, one
//! keep-alive connection per user, opened on first use and again after a failure), sent the way
//! the gRPC calls are. Everything that does not change per request — the address, the `Host`
//! header, the paths, every fixture user's auth header — is built once in a [`RestTarget`]; a
//! request is one `Request` with three headers, one deadline over send and body, no gzip, and
//! the body either streamed through a check without being kept or taken whole when the caller
//! reads it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;

use crate::engine::recorder::Outcome;
use crate::target::checks::{BodyShape, challenges_shape};
use crate::target::requests;

/// How REST requests authenticate.
#[derive(Debug, Clone)]
pub enum RestAuth {
    /// `Authorization: Bearer <token>`, one token per fixture user (same order).
    Tokens(Arc<Vec<String>>),
    /// `X-Mock-User-Id: <user>` (the SUT runs with auth disabled).
    MockHeader,
}

/// Why a [`RestTarget`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The API URL is not `http://host:port`.
    #[error("API URL {0:?}: {1}")]
    Url(String, String),
    /// A token or user id cannot be an HTTP header value.
    #[error("user {0}: its token or id is not a valid HTTP header value")]
    Header(usize),
}

/// What every user's REST requests share, built once per run.
#[derive(Debug)]
pub struct RestTarget {
    address: SocketAddr,
    host: HeaderValue,
    base_path: String,
    challenges: Uri,
    auth_name: HeaderName,
    auth_values: Vec<HeaderValue>,
    deadline: Duration,
}

impl RestTarget {
    /// The target at `api_url` (`http://host:port`, resolved now), its API under `base_path`,
    /// users authenticating as `auth` says (`users` gives their ids), every request given
    /// `deadline` for its response and body.
    pub async fn new(
        api_url: &str,
        base_path: &str,
        auth: &RestAuth,
        users: &[String],
        deadline: Duration,
    ) -> Result<Self, TargetError> {
        let bad = |why: &str| TargetError::Url(api_url.to_owned(), why.to_owned());
        let url = url::Url::parse(api_url).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// is supported"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let port = url.port_or_known_default().ok_or_else(|| bad("no port"))?;
        let address = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| bad(&format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| bad("resolves to no address"))?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let challenges = requests::challenges_path(base_path).parse().map_err(|_| bad("base path is not a path"))?;
        let (auth_name, auth_values) = match auth {
            RestAuth::Tokens(tokens) => (
                AUTHORIZATION,
                tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| HeaderValue::try_from(format!("Bearer {t}")).map_err(|_| TargetError::Header(i)))
                    .collect::<Result<_, _>>()?,
            ),
            RestAuth::MockHeader => (
                HeaderName::from_static(requests::MOCK_USER_HEADER),
                users
                    .iter()
                    .enumerate()
                    .map(|(i, u)| HeaderValue::try_from(u.as_str()).map_err(|_| TargetError::Header(i)))
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Self {
            address,
            host: HeaderValue::try_from(authority).map_err(|_| bad("host is not a header value"))?,
            base_path: base_path.to_owned(),
            challenges,
            auth_name,
            auth_values,
            deadline,
        })
    }

    /// `GET /v1/challenges`.
    pub fn challenges(&self) -> &Uri {
        &self.challenges
    }

    /// The claim of `goal` of `challenge`.
    pub fn claim(&self, challenge: &str, goal: &str) -> Result<Uri, Outcome> {
        requests::claim_path(&self.base_path, challenge, goal)
            .parse()
            .map_err(|_| Outcome::failed(0, "request: the claim's path is not a valid URI"))
    }
}

/// What a request should keep of the response body (it is always read to its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: only its length.
    Nothing,
    /// Whether it has the shape of a challenges list ([`BodyShape`]).
    Shape,
    /// All of it.
    Whole,
}

/// A response as the caller asked for it.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// With [`Keep::Shape`] or [`Keep::Whole`]: whether the body has the shape of a challenges list.
    pub shape: bool,
    /// With [`Keep::Whole`]: the body.
    pub body: Bytes,
}

/// One virtual user's HTTP/1.1 client: its connection (if open) to the shared target.
#[derive(Debug)]
pub struct RestClient {
    target: Arc<RestTarget>,
    connection: Option<SendRequest<Empty<Bytes>>>,
}

/// A copy of a client is a client of the same target with a connection of its own (goose wants
/// session data to be `Clone`; it never clones it mid-run).
impl Clone for RestClient {
    fn clone(&self) -> Self {
        Self::new(self.target.clone())
    }
}

impl RestClient {
    /// A client of `target`; it connects on its first request.
    pub fn new(target: Arc<RestTarget>) -> Self {
        Self { target, connection: None }
    }

    /// The target.
    pub fn target(&self) -> &RestTarget {
        &self.target
    }

    /// True while its connection is open (a request can go at once).
    pub fn is_open(&self) -> bool {
        self.connection.as_ref().is_some_and(|c| !c.is_closed())
    }

    /// Opens its connection now, if it is not open.
    pub async fn connect(&mut self) -> Result<(), Outcome> {
        if !self.is_open() {
            self.connection = Some(connect(self.target.address).await?);
        }
        Ok(())
    }

    /// Sends `method uri` as fixture user `user` and reads the whole response within the
    /// target's deadline. A failure (status 0, as k6 tags a request without a response) closes
    /// the connection; the next request opens a new one.
    pub async fn send(&mut self, method: Method, uri: Uri, user: usize, keep: Keep) -> Result<Reply, Outcome> {
        let Self { target, connection: open } = self;
        let auth = target.auth_values.get(user).ok_or_else(|| Outcome::failed(0, "request: no such user"))?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, target.host.clone())
            .header(&target.auth_name, auth.clone())
            .body(Empty::new())
            .map_err(|e| Outcome::failed(0, format!("request: {e}")))?;
        let exchange = async {
            let (mut connection, mut reused) = match open.take() {
                Some(open) if !open.is_closed() => (open, true),
                _ => (connect(target.address).await?, false),
            };
            let mut request = request;
            // A request never written on a kept-alive connection that the server closed as it was
            // reused (its idle timeout) goes once more, on a new connection, as a browser or
            // hyper's pooled client would send it.
            let response = loop {
                if let Err(e) = connection.ready().await {
                    if !reused {
                        return Err(transport(&e));
                    }
                } else {
                    match connection.try_send_request(request).await {
                        Ok(response) => break response,
                        Err(mut failed) => match failed.take_message() {
                            Some(unsent) if reused => request = unsent,
                            _ => return Err(transport(failed.error())),
                        },
                    }
                }
                connection = connect(target.address).await?;
                reused = false;
            };
            let status = response.status().as_u16();
            let reply = read(response.into_body(), status, keep).await?;
            *open = Some(connection);
            Ok(reply)
        };
        match tokio::time::timeout(target.deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Outcome::failed(0, "timeout")),
        }
    }
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, Outcome> {
    let connect_error = || Outcome::failed(0, "connect error");
    let stream = tokio::net::TcpStream::connect(address).await.map_err(|_| connect_error())?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| connect_error())?;
    tokio::spawn(async move {
        // Ends when the user drops its sender or the peer closes; a failure shows in the request.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn read(mut body: hyper::body::Incoming, status: u16, keep: Keep) -> Result<Reply, Outcome> {
    let mut reply = Reply { status, shape: false, body: Bytes::new() };
    match keep {
        Keep::Whole => {
            let whole = body.collect().await.map_err(|e| transport(&e))?.to_bytes();
            reply.shape = challenges_shape(&whole);
            reply.body = whole;
        }
        Keep::Shape | Keep::Nothing => {
            let mut shape = BodyShape::default();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| transport(&e))?;
                if let (Ok(data), Keep::Shape) = (frame.into_data(), keep) {
                    shape.feed(&data);
                }
            }
            reply.shape = shape.holds();
        }
    }
    Ok(reply)
}

/// A REST request that got no (whole) response: status 0, as k6 tags it.
fn transport(e: &hyper::Error) -> Outcome {
    Outcome::failed(0, format!("transport: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_closing_kept_alive_connections_costs_no_request() {
        // Answers one request per connection, then closes it without saying so (as a server's
        // idle timeout does): the next request must go on a new connection, not fail.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let body = br#"{"challenges":[]}"#;
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    let _ = socket.write_all(&[head.as_bytes(), body].concat()).await;
                });
            }
        });
        let users = vec!["user-000001".to_owned()];
        let target =
            RestTarget::new(&format!("http://{address}"), "", &RestAuth::MockHeader, &users, Duration::from_secs(5))
                .await
                .unwrap();
        let mut client = RestClient::new(Arc::new(target));
        let uri = client.target().challenges().clone();
        for request in 0..200 {
            let reply = client.send(Method::GET, uri.clone(), 0, Keep::Shape).await;
            assert!(reply.as_ref().is_ok_and(|r| r.status == 200 && r.shape), "request {request}: {reply:?}");
        }
    }
}
