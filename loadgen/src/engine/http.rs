//! The REST side of a virtual user: a lean HTTP/1.1 client (hyper's connection API, one
//! keep-alive connection per user and replica, opened on first use and again after a failure),
//! sent the way the gRPC calls are. Everything that does not change per request — the
//! addresses, the `Host` headers, the paths, every fixture user's auth header — is built once in
//! a [`RestTarget`]; a request is one `Request` with three headers, one deadline over send and
//! body, no gzip, and the body either streamed through a check without being kept or taken whole
//! when the caller reads it. Against several replicas each user sends each request to the next
//! (round-robin per request, as a client-side balancer holding a connection to every backend):
//! the load spreads evenly however few users are busy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;

use crate::definition::options::Balance;
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

/// One replica of the API: where to connect and the `Host` its requests carry.
#[derive(Debug)]
struct Replica {
    address: SocketAddr,
    host: HeaderValue,
}

impl Replica {
    /// `api_url` (`http://host:port`) resolved now.
    async fn resolve(api_url: &str) -> Result<Self, TargetError> {
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
        let host = HeaderValue::try_from(authority).map_err(|_| bad("host is not a header value"))?;
        Ok(Self { address, host })
    }
}

/// What every user's REST requests share, built once per run.
#[derive(Debug)]
pub struct RestTarget {
    replicas: Vec<Replica>,
    /// The replica the next new user starts on (modulo their count).
    next: AtomicUsize,
    /// Each request to the next replica, or each user's requests all to its first.
    balance: Balance,
    base_path: String,
    challenges: Uri,
    auth_name: HeaderName,
    auth_values: Vec<HeaderValue>,
    deadline: Duration,
}

impl RestTarget {
    /// The target at `api_urls` (each `http://host:port`, resolved now: one per replica), its API
    /// under `base_path`, users authenticating as `auth` says (`users` gives their ids), every
    /// request given `deadline` for its response and body.
    pub async fn new(
        api_urls: &[String],
        base_path: &str,
        auth: &RestAuth,
        users: &[String],
        deadline: Duration,
    ) -> Result<Self, TargetError> {
        let mut replicas = Vec::with_capacity(api_urls.len());
        for api_url in api_urls {
            replicas.push(Replica::resolve(api_url).await?);
        }
        if replicas.is_empty() {
            return Err(TargetError::Url(String::new(), "no API URL".into()));
        }
        let bad = |why: &str| TargetError::Url(api_urls[0].clone(), why.to_owned());
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
            replicas,
            next: AtomicUsize::new(0),
            balance: Balance::PerRequest,
            base_path: base_path.to_owned(),
            challenges,
            auth_name,
            auth_values,
            deadline,
        })
    }

    /// This target with its users' requests spread as `balance` says (per request by default).
    pub fn balanced(mut self, balance: Balance) -> Self {
        self.balance = balance;
        self
    }

    /// The replica a new user's first request goes to: each in turn.
    fn first_turn(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// How many replicas the target has.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
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

/// One virtual user's HTTP/1.1 client: its connection (if open) to each replica of the shared
/// target, and whose turn it is.
#[derive(Debug)]
pub struct RestClient {
    target: Arc<RestTarget>,
    connections: Vec<Option<SendRequest<Empty<Bytes>>>>,
    /// The replica of its next request (modulo their count); per connection, its only one.
    turn: usize,
}

/// A copy of a client is a client of the same target with connections of its own (goose wants
/// session data to be `Clone`; it never clones it mid-run).
impl Clone for RestClient {
    fn clone(&self) -> Self {
        Self::new(self.target.clone())
    }
}

impl RestClient {
    /// A client of `target`; it connects to each replica on its first request there.
    pub fn new(target: Arc<RestTarget>) -> Self {
        let turn = target.first_turn();
        Self { connections: target.replicas.iter().map(|_| None).collect(), target, turn }
    }

    /// The target.
    pub fn target(&self) -> &RestTarget {
        &self.target
    }

    /// The replica of its next request.
    fn next_replica(&self) -> usize {
        self.turn % self.connections.len().max(1)
    }

    /// The replicas this client sends to: all, or (per connection) its one.
    fn used(&self) -> std::ops::Range<usize> {
        match self.target.balance {
            Balance::PerRequest => 0..self.connections.len(),
            Balance::PerConnection => self.next_replica()..self.next_replica() + 1,
        }
    }

    /// True while its connections to the replicas it uses are open (a request can go at once).
    pub fn is_open(&self) -> bool {
        self.used().all(|i| self.connections[i].as_ref().is_some_and(|c| !c.is_closed()))
    }

    /// Opens its connections now, those not open.
    pub async fn connect(&mut self) -> Result<(), Outcome> {
        for index in self.used() {
            let open = &mut self.connections[index];
            if open.as_ref().is_none_or(|c| c.is_closed()) {
                *open = Some(connect(self.target.replicas[index].address).await?);
            }
        }
        Ok(())
    }

    /// Sends `method uri` as fixture user `user` to the next replica and reads the whole response
    /// within the target's deadline. A failure (status 0, as k6 tags a request without a
    /// response) closes that connection; the next request to the replica opens a new one.
    pub async fn send(&mut self, method: Method, uri: Uri, user: usize, keep: Keep) -> Result<Reply, Outcome> {
        let index = self.next_replica();
        if self.target.balance == Balance::PerRequest {
            self.turn = self.turn.wrapping_add(1);
        }
        let Self { target, connections, .. } = self;
        let (Some(replica), Some(open)) = (target.replicas.get(index), connections.get_mut(index)) else {
            return Err(Outcome::failed(0, "request: no API replica"));
        };
        let auth = target.auth_values.get(user).ok_or_else(|| Outcome::failed(0, "request: no such user"))?;
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(HOST, replica.host.clone())
            .header(&target.auth_name, auth.clone())
            .body(Empty::new())
            .map_err(|e| Outcome::failed(0, format!("request: {e}")))?;
        let exchange = async {
            let (mut connection, mut reused) = match open.take() {
                Some(open) if !open.is_closed() => (open, true),
                _ => (connect(replica.address).await?, false),
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
                connection = connect(replica.address).await?;
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
        let url = [format!("http://{address}")];
        let target = RestTarget::new(&url, "", &RestAuth::MockHeader, &users, Duration::from_secs(5)).await.unwrap();
        let mut client = RestClient::new(Arc::new(target));
        let uri = client.target().challenges().clone();
        for request in 0..200 {
            let reply = client.send(Method::GET, uri.clone(), 0, Keep::Shape).await;
            assert!(reply.as_ref().is_ok_and(|r| r.status == 200 && r.shape), "request {request}: {reply:?}");
        }
    }

    /// A server that keeps connections alive, counts the requests it answers, and answers 200
    /// when a request's `Host` is its own address, 421 otherwise.
    async fn counting_server() -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut lines = BufReader::new(socket);
                    let mut right_host = false;
                    let mut line = String::new();
                    while lines.read_line(&mut line).await.is_ok_and(|n| n > 0) {
                        if line.to_ascii_lowercase().starts_with("host:") {
                            right_host = line[5..].trim() == address.to_string();
                        }
                        if line == "\r\n" {
                            counted.fetch_add(1, Ordering::SeqCst);
                            let status = if right_host { "200 OK" } else { "421 Misdirected Request" };
                            let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                            let _ = lines.get_mut().write_all(answer.as_bytes()).await;
                        }
                        line.clear();
                    }
                });
            }
        });
        (format!("http://{address}"), connections)
    }

    #[tokio::test]
    async fn requests_go_to_the_replicas_in_turn_each_naming_its_replica() {
        let (a, on_a) = counting_server().await;
        let (b, on_b) = counting_server().await;
        let users = vec!["user-000001".to_owned()];
        let target = Arc::new(
            RestTarget::new(&[a, b], "", &RestAuth::MockHeader, &users, Duration::from_secs(5)).await.unwrap(),
        );
        assert_eq!(target.replicas(), 2);
        let uri = target.challenges().clone();
        for _ in 0..10 {
            let mut client = RestClient::new(target.clone());
            for request in 0..3 {
                let reply = client.send(Method::GET, uri.clone(), 0, Keep::Nothing).await;
                assert!(reply.as_ref().is_ok_and(|r| r.status == 200), "request {request}: {reply:?}");
            }
        }
        // Each user alternates, the users starting on each in turn: 30 requests, 15 each.
        assert_eq!((on_a.load(Ordering::SeqCst), on_b.load(Ordering::SeqCst)), (15, 15));
    }

    #[tokio::test]
    async fn per_connection_each_user_stays_on_the_replica_its_connection_was_handed() {
        let (a, on_a) = counting_server().await;
        let (b, on_b) = counting_server().await;
        let users = vec!["user-000001".to_owned()];
        let target = RestTarget::new(&[a, b], "", &RestAuth::MockHeader, &users, Duration::from_secs(5)).await.unwrap();
        let target = Arc::new(target.balanced(Balance::PerConnection));
        let uri = target.challenges().clone();
        let mut counts = Vec::new();
        for users in [1, 2, 3] {
            let mut client = RestClient::new(target.clone());
            client.connect().await.unwrap();
            assert!(client.is_open(), "one connection is all a per-connection user needs");
            for _ in 0..users * 4 {
                client.send(Method::GET, uri.clone(), 0, Keep::Nothing).await.unwrap();
            }
            counts.push((on_a.load(Ordering::SeqCst), on_b.load(Ordering::SeqCst)));
        }
        // The first user's 4 requests on A, the second's 8 on B, the third's 12 on A.
        assert_eq!(counts, vec![(4, 0), (4, 8), (16, 8)]);
    }
}
