//! The services' command lines, the same for processes and containers (each followed by the
//! user's extra arguments for that service), and the ports they bind.

use super::ProvisionSettings;

/// The ports the services bind (0: any free one, reported on the READY line).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ports {
    pub mock: u16,
    pub rest: u16,
    pub api_admin: u16,
    pub grpc: u16,
    pub handler_admin: u16,
}

/// The services' command lines, the same for processes and containers, each followed by the
/// user's extra arguments for that service. Every service binds loopback only.
pub(super) struct ServiceCommands<'a> {
    pub settings: &'a ProvisionSettings,
    pub database_url: &'a str,
    pub jwt_secret: &'a str,
}

impl ServiceCommands<'_> {
    fn with_extra(&self, service: &str, args: &[&str]) -> Vec<String> {
        let extra = self.settings.extra_args.get(service).cloned().unwrap_or_default();
        args.iter().map(|a| (*a).to_owned()).chain(extra).collect()
    }

    fn database_and_config(&self) -> [String; 6] {
        let config = self.settings.challenges_config.display().to_string();
        let (url, namespace) = (self.database_url.to_owned(), self.settings.namespace.clone());
        ["--database-url".into(), url, "--challenges-config".into(), config, "--namespace".into(), namespace]
    }

    pub fn reward_mock(&self, ports: &Ports) -> Vec<String> {
        self.with_extra("reward-mock", &["--host", "127.0.0.1", "--port", &ports.mock.to_string()])
    }

    pub fn challenge_service(&self, ports: &Ports, reward_url: &str) -> Vec<String> {
        let common = self.database_and_config();
        let (rest, admin) = (ports.rest.to_string(), ports.api_admin.to_string());
        let own = ["--auth-mode", "jwt", "--jwt-secret", self.jwt_secret, "--reward-platform-url", reward_url];
        let bind = ["--host", "127.0.0.1", "--port", &rest, "--admin-port", &admin];
        let args: Vec<&str> = common.iter().map(String::as_str).chain(own).chain(bind).collect();
        self.with_extra("challenge-service", &args)
    }

    pub fn event_handler(&self, ports: &Ports) -> Vec<String> {
        let common = self.database_and_config();
        let (grpc, admin) = (ports.grpc.to_string(), ports.handler_admin.to_string());
        let bind = ["--host", "127.0.0.1", "--grpc-port", &grpc, "--admin-port", &admin];
        let args: Vec<&str> = common.iter().map(String::as_str).chain(bind).collect();
        self.with_extra("event-handler", &args)
    }
}

/// `N` free loopback ports (bound, read and released; the services bind them next).
pub(super) fn free_ports<const N: usize>() -> std::io::Result<[u16; N]> {
    let listeners: Vec<std::net::TcpListener> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}
