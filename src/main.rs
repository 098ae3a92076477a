//! The `dsys` command line: parse the arguments, start the logger, run one role or tool, and
//! turn its result into the exit status of `CONTRACT.md` (0 success, 1 runtime failure with
//! one line on stderr, 2 usage error — clap exits with 2 on its own).
//!
//! Each subcommand's flags are one struct (`CoordinatorArgs`, `ServerArgs`, ...)
//! whose `into_config` makes the `Config` its role or tool runs with; [`run`] is then one
//! line per subcommand. Everything else lives in the library (`src/lib.rs`), so tests and
//! the demo start the same roles this file does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use dsys::roles::{client, coordinator, server};
use dsys::tools::{bench, demo, status};
use dsys::{DEFAULT_COORDINATOR, Error};

/// A small distributed messaging system: a coordinator, servers and clients.
///
/// Start a coordinator, then a few servers, then clients; every line a client types reaches
/// every other client, on any server, and clients move by themselves when a server fails.
/// `dsys demo` shows the whole story on one machine.
#[derive(Parser)]
#[command(name = "dsys", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Track servers by their heartbeats, assign clients to servers, move the clients of a
    /// failed server, and keep the servers' client counts within one of each other.
    #[command(mut_arg("max_connections", |arg| arg.help(max_connections_help(coordinator::DEFAULT_MAX_CONNECTIONS))))]
    Coordinator(CoordinatorArgs),
    /// Accept clients (one thread each) and broadcast their messages across the cluster.
    #[command(mut_arg("max_connections", |arg| arg.help(max_connections_help(server::DEFAULT_MAX_CONNECTIONS))))]
    Server(ServerArgs),
    /// Register with a server, send stdin lines (and `/file PATH`) to every other client, and
    /// print what the others send.
    #[command(after_help = client::input::HELP)]
    Client(ClientArgs),
    /// Show the servers the coordinator knows, and their clients.
    Status(StatusArgs),
    /// Run the whole story on this machine: a coordinator, three servers, clients sharing
    /// text, a server killed, its clients moved, and a summary.
    Demo,
    /// Measure throughput and latency: start a cluster (or use running servers), run a
    /// load, check that nothing was lost, duplicated or reordered, and report deliveries a
    /// second, latency and the servers' CPU per delivery (docs/benchmarks.md).
    Bench(BenchArgs),
}

/// The flags of `dsys coordinator`.
#[derive(Args)]
struct CoordinatorArgs {
    /// Address to listen on (HOST:PORT; port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_COORDINATOR, value_parser = listen_addr)]
    listen: String,
    /// A server silent for this long (milliseconds) is declared dead.
    #[arg(long, value_name = "MS", default_value_t = 1500, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_timeout: u64,
    /// Whenever the servers' client counts drift apart by two or more (a server returns
    /// or joins, clients leave), move clients at most this many a second until they
    /// differ by at most one (docs/heartbeats-and-failover.md).
    #[arg(long, value_name = "MOVES", default_value_t = coordinator::DEFAULT_PACE, value_parser = clap::value_parser!(u32).range(1..))]
    rebalance_pace: u32,
    /// Never move a client that has a live server: a returning server then gets only
    /// new clients.
    #[arg(long)]
    no_rebalance: bool,
    /// Serve metrics for Prometheus at http://ADDR/metrics (HOST:PORT; port 0 picks a
    /// free port): the servers live, leaving and dead, servers declared dead, plans
    /// made. Off by default (docs/heartbeats-and-failover.md, "Metrics").
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    metrics: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    secret: SecretArgs,
}

impl CoordinatorArgs {
    /// The coordinator's configuration.
    ///
    /// # Errors
    /// When the secret file cannot be read ([`SecretArgs::load`]).
    fn into_config(self) -> dsys::Result<coordinator::Config> {
        Ok(coordinator::Config {
            metrics: self.metrics,
            limits: self
                .limits
                .into_limits(coordinator::DEFAULT_MAX_CONNECTIONS),
            secret: self.secret.load()?,
            rebalance_pace: (!self.no_rebalance).then_some(self.rebalance_pace),
            ..coordinator::Config::new(self.listen, Duration::from_millis(self.heartbeat_timeout))
        })
    }
}

/// The flags of `dsys server`.
#[derive(Args)]
struct ServerArgs {
    /// Port to listen on (0: any free port).
    #[arg(short, long, default_value_t = 8080)]
    port: u16,
    /// Address to bind (a host name or IP address, no port).
    #[arg(long, default_value = "127.0.0.1", value_parser = bind_host)]
    host: String,
    /// Address to listen on, HOST:PORT: the same as --host HOST --port PORT, in the form
    /// the coordinator's --listen takes.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["host", "port"], value_parser = listen_addr)]
    listen: Option<String>,
    /// The coordinator's address (HOST:PORT).
    #[arg(short, long, value_name = "ADDR", env = "DSYS_COORDINATOR", default_value = DEFAULT_COORDINATOR, value_parser = connect_addr)]
    coordinator: String,
    /// How often to send a heartbeat to the coordinator (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    heartbeat_interval: u64,
    /// The address clients and peers should use to reach this server (default: HOST:PORT;
    /// needed when HOST is 0.0.0.0).
    #[arg(long, value_name = "ADDR", value_parser = connect_addr)]
    advertise: Option<String>,
    /// Most clients this server accepts at once; more are refused with "server full".
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_MAX_CLIENTS)]
    max_clients: usize,
    /// Most messages kept in the history window that failed-over clients resume from.
    #[arg(long, value_name = "N", default_value_t = server::DEFAULT_HISTORY_MESSAGES)]
    history_messages: usize,
    /// Most payload bytes kept in the history window. Half of it bounds each client's
    /// and peer's queue and the relays awaiting confirmation, so the server's memory
    /// stays near 1.5 times this. Raise it to let a receiver that stops reading be away
    /// longer without losing messages.
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_HISTORY_BYTES)]
    history_bytes: usize,
    /// A client that is behind and has read nothing for this long (milliseconds) no
    /// longer slows senders down: it is taken to have stopped reading.
    #[arg(long, value_name = "MS", default_value_t = ms(server::DEFAULT_STALL_TIMEOUT))]
    stall_timeout: u64,
    /// A write to a client that blocks this long (milliseconds) cuts the client off as a
    /// reader that has stopped; it resumes from the history window when it reads again.
    #[arg(long, value_name = "MS", default_value_t = ms(server::DEFAULT_WRITE_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout: u64,
    /// Longest client name accepted (names use letters, digits, '-', '_' and '.'). With
    /// --max-clients, bounded so that every name fits in one heartbeat (1 MiB): 10,000
    /// clients allow names of up to 102 bytes.
    #[arg(long, value_name = "BYTES", default_value_t = server::DEFAULT_MAX_NAME_LEN, value_parser = clap::value_parser!(u16).range(1..=dsys::protocol::MAX_NAME_LEN_LIMIT as i64).map(usize::from))]
    max_name_len: usize,
    /// On SIGTERM or SIGINT the server moves its clients to the other servers before it
    /// stops (a planned stop); this is how long that may take (milliseconds) before it
    /// stops at once, as a second signal does, and the clients still on it fail over.
    /// 10,000 clients move in about 20 s.
    #[arg(long, value_name = "MS", default_value_t = ms(server::DEFAULT_DRAIN_TIMEOUT))]
    drain_timeout: u64,
    /// Serve metrics for Prometheus at http://ADDR/metrics (HOST:PORT; port 0 picks a
    /// free port): clients, messages and bytes in and out, slow consumers, the history
    /// window, peer links, moves. Off by default (docs/heartbeats-and-failover.md,
    /// "Metrics").
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    metrics: Option<String>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    secret: SecretArgs,
}

impl ServerArgs {
    /// The server's configuration: `--listen`, or else `--host` and `--port`, is where it
    /// listens.
    ///
    /// # Errors
    /// When the secret file cannot be read ([`SecretArgs::load`]).
    fn into_config(self) -> dsys::Result<server::Config> {
        let listen = (self.listen).unwrap_or_else(|| format!("{}:{}", self.host, self.port));
        Ok(server::Config {
            metrics: self.metrics,
            secret: self.secret.load()?,
            advertise: self.advertise,
            max_clients: self.max_clients,
            history_messages: self.history_messages,
            history_bytes: self.history_bytes,
            stall_timeout: Duration::from_millis(self.stall_timeout),
            write_timeout: Duration::from_millis(self.write_timeout),
            max_name_len: self.max_name_len,
            drain_timeout: Duration::from_millis(self.drain_timeout),
            limits: self.limits.into_limits(server::DEFAULT_MAX_CONNECTIONS),
            ..server::Config::new(
                listen,
                self.coordinator,
                Duration::from_millis(self.heartbeat_interval),
            )
        })
    }
}

/// The flags of `dsys client`.
#[derive(Args)]
struct ClientArgs {
    /// Accepted for the seed's usage, and implied: every client registers.
    #[arg(long)]
    register: bool,
    /// The coordinator's address (HOST:PORT), asked which server to use.
    #[arg(short, long, value_name = "ADDR", env = "DSYS_COORDINATOR", default_value = DEFAULT_COORDINATOR, value_parser = connect_addr)]
    coordinator: String,
    /// Start on this server (HOST:PORT) instead of asking the coordinator (failovers
    /// still go through it: to the standby a server names from the coordinator's list of
    /// live servers, or where the coordinator says).
    #[arg(short, long, value_name = "ADDR", value_parser = connect_addr)]
    server: Option<String>,
    /// Name to register under (default: user-PID): letters, digits, '-', '_' and '.'
    /// (not first), unique across the cluster.
    #[arg(short, long)]
    name: Option<String>,
    /// How to print events on stdout: text for a person (control characters that other
    /// clients sent are shown as escapes), or JSON Lines for a script (README, "Logs and JSON output").
    #[arg(short, long, value_enum, default_value_t = OutputArg::Text)]
    output: OutputArg,
    /// Receive only: never read stdin, and run until SIGINT or SIGTERM (or --count).
    /// Fails over like any client.
    #[arg(long, conflicts_with_all = ["send", "send_file"])]
    listen: bool,
    /// With --listen, leave (exit 0) after receiving this many messages and files.
    #[arg(long, value_name = "N", requires = "listen", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Where received files are saved.
    #[arg(long, value_name = "DIR", default_value = "downloads")]
    download_dir: PathBuf,
    /// Send this text before reading stdin (repeatable).
    #[arg(long, value_name = "TEXT")]
    send: Vec<String>,
    /// Send this file before reading stdin (repeatable). Every one is checked before
    /// registering: one that is missing, unreadable or too large ends the client with
    /// exit status 1 and a line naming it, before anything is sent.
    #[arg(long, value_name = "PATH")]
    send_file: Vec<PathBuf>,
    /// Largest file to send, in bytes; a bigger one is refused before anything is sent.
    #[arg(long, value_name = "BYTES", default_value_t = client::DEFAULT_MAX_FILE_SIZE)]
    max_file_size: u64,
    #[command(flatten)]
    secret: SecretArgs,
}

impl ClientArgs {
    /// The client's configuration, named `user-PID` when `--name` is not given.
    /// (`--register` changes nothing: every client registers.)
    ///
    /// # Errors
    /// When the secret file cannot be read ([`SecretArgs::load`]).
    fn into_config(self) -> dsys::Result<client::Config> {
        Ok(client::Config {
            session: client::SessionConfig {
                coordinator: self.coordinator,
                server: self.server,
                name: (self.name).unwrap_or_else(|| format!("user-{}", std::process::id())),
                download_dir: self.download_dir,
                max_file_size: self.max_file_size,
                secret: self.secret.load()?,
            },
            output: self.output.into(),
            send: self.send,
            send_files: self.send_file,
            listen: self.listen,
            count: self.count,
        })
    }
}

/// The flags of `dsys status`.
#[derive(Args)]
struct StatusArgs {
    /// The coordinator's address (HOST:PORT).
    #[arg(short, long, value_name = "ADDR", env = "DSYS_COORDINATOR", default_value = DEFAULT_COORDINATOR, value_parser = connect_addr)]
    coordinator: String,
    /// Table or JSON.
    #[arg(short, long, value_enum, default_value_t = OutputArg::Text)]
    output: OutputArg,
    /// List every client, one per line under its server (the table otherwise shows a
    /// count and the names that fit on the server's line; JSON always lists them all).
    #[arg(long)]
    clients: bool,
    #[command(flatten)]
    secret: SecretArgs,
}

impl StatusArgs {
    /// What `dsys status` asks and how it prints it.
    ///
    /// # Errors
    /// When the secret file cannot be read ([`SecretArgs::load`]).
    fn into_config(self) -> dsys::Result<status::Config> {
        Ok(status::Config {
            coordinator: self.coordinator,
            output: self.output.into(),
            names: if self.clients {
                status::Names::All
            } else {
                status::Names::Summary
            },
            secret: self.secret.load()?,
        })
    }
}

/// The flags of `dsys bench`.
#[derive(Args)]
struct BenchArgs {
    /// The load: s1 fan-out (1 -> 100), s2w chat (20 x 20), s3 latency (2,000 a second
    /// to 100), s4a cluster (3 servers, 1 -> 99), failover (1,000 a second to 100
    /// subscribers whose server is killed), storm (1,000 idle clients whose server is
    /// killed, 4 messages a second to everyone). The flags below change its numbers.
    #[arg(long, value_enum, default_value_t = LoadArg::S1)]
    load: LoadArg,
    /// Clients that publish (each also receives) [default: the load's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    publishers: Option<usize>,
    /// Clients that only receive [default: the load's]; for storm, the idle clients of
    /// the server killed (also `--clients`).
    #[arg(long, visible_alias = "clients", value_parser = clap::value_parser!(u32).map(|n| n as usize))]
    subscribers: Option<usize>,
    /// Servers to start, clients spread over them in turn [default: the load's].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16).map(|n| n as usize))]
    servers: Option<usize>,
    /// Messages each publisher sends [default: the load's].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Messages a second per publisher [default: as fast as the window allows; s3: 2000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Bytes of text per message (at least 16: the send time it carries).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(dsys::tools::bench::MIN_SIZE as i64..=dsys::protocol::MAX_PAYLOAD_LEN as i64).map(|n| n as usize))]
    size: usize,
    /// Messages a publisher may have sent and not yet had acknowledged.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize))]
    window: usize,
    /// Use these running servers (HOST:PORT, comma-separated) instead of starting a
    /// cluster; the servers' CPU is then not reported.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',', value_parser = connect_addr)]
    connect: Vec<String>,
    /// Text or one JSON object.
    #[arg(short, long, value_enum, default_value_t = OutputArg::Text)]
    output: OutputArg,
    /// The storm load's child processes: the part of its idle clients this one runs
    /// (FIRST,COUNT,COORDINATOR,SERVER). The bench's own business, so clap hides it.
    #[arg(long, hide = true, value_name = "PART")]
    storm_part: Option<String>,
}

impl BenchArgs {
    /// What `dsys bench` runs; every number left out is the load's.
    fn into_config(self) -> bench::BenchConfig {
        bench::BenchConfig {
            load: self.load.into(),
            publishers: self.publishers,
            subscribers: self.subscribers,
            servers: self.servers,
            messages: self.messages,
            rate: self.rate,
            size: self.size,
            window: self.window,
            connect: self.connect,
            output: self.output.into(),
            storm_part: self.storm_part,
        }
    }
}

/// The loads of `docs/benchmarks.md`.
#[derive(Clone, Copy, ValueEnum)]
enum LoadArg {
    S1,
    S2w,
    S3,
    S4a,
    Failover,
    Storm,
}

impl From<LoadArg> for bench::Load {
    fn from(arg: LoadArg) -> bench::Load {
        match arg {
            LoadArg::S1 => bench::Load::S1,
            LoadArg::S2w => bench::Load::S2w,
            LoadArg::S3 => bench::Load::S3,
            LoadArg::S4a => bench::Load::S4a,
            LoadArg::Failover => bench::Load::Failover,
            LoadArg::Storm => bench::Load::Storm,
        }
    }
}

/// The limits every listening role puts on the connections it accepts
/// (`docs/security.md`).
#[derive(Args)]
struct LimitArgs {
    /// Connections served at once (each role sets this help with its own default:
    /// `max_connections_help`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    max_connections: Option<usize>,
    /// A new connection must have said hello and made its first request within this many
    /// milliseconds, however slowly it sends; otherwise it is closed.
    #[arg(long, value_name = "MS", default_value_t = ms(dsys::net::DEFAULT_HANDSHAKE_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    handshake_timeout: u64,
    /// An established connection silent for this many milliseconds is closed (peers send
    /// keepalives far more often).
    #[arg(long, value_name = "MS", default_value_t = ms(dsys::net::DEFAULT_IDLE_TIMEOUT), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
}

/// The help of `--max-connections`, which each role gives with its own default.
fn max_connections_help(default: usize) -> String {
    format!(
        "Connections served at once; more are refused at once with a reason [default: {default}]"
    )
}

impl LimitArgs {
    fn into_limits(self, default_max_connections: usize) -> dsys::net::ConnectionLimits {
        dsys::net::ConnectionLimits {
            max_connections: self.max_connections.unwrap_or(default_max_connections),
            handshake_timeout: Duration::from_millis(self.handshake_timeout),
            idle_timeout: Duration::from_millis(self.idle_timeout),
        }
    }
}

/// The cluster secret, which every role takes the same way (`docs/security.md`).
#[derive(Args)]
struct SecretArgs {
    /// File holding the cluster secret; every connection must then prove it. Without this
    /// flag the secret is taken from DSYS_SECRET, if set. (No flag takes the secret itself:
    /// `ps` would show it.)
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn load(self) -> dsys::Result<Option<dsys::auth::Secret>> {
        dsys::auth::Secret::load(self.secret_file.as_deref())
    }
}

/// An address to connect to: `HOST:PORT` with a port from 1 to 65535. Only the form is
/// checked here (a usage error, exit status 2); whether the name resolves is found out when
/// connecting (a runtime failure, exit status 1).
fn connect_addr(value: &str) -> Result<String, String> {
    match parse_addr(value)? {
        0 => Err("port 0 cannot be connected to: give the port the peer listens on".into()),
        _ => Ok(value.to_string()),
    }
}

/// An address to listen on: `HOST:PORT`, where port 0 picks a free port.
fn listen_addr(value: &str) -> Result<String, String> {
    parse_addr(value).map(|_| value.to_string())
}

/// Checks the form `HOST:PORT` (`[IPv6]:PORT` for an IPv6 address) and returns the port.
fn parse_addr(value: &str) -> Result<u16, String> {
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err("expected HOST:PORT (say, 127.0.0.1:7000): the port is missing".into());
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("expected HOST:PORT: {port:?} is not a port (0 to 65535)"))?;
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ipv6) => {
            ipv6.parse::<std::net::Ipv6Addr>()
                .map_err(|_| format!("expected HOST:PORT: [{ipv6}] is not an IPv6 address"))?;
        }
        None if host.contains(':') => {
            return Err(format!(
                "expected HOST:PORT: an IPv6 address goes in brackets, as in [{host}]:{port}"
            ));
        }
        None if host.is_empty() => {
            return Err("expected HOST:PORT (say, 127.0.0.1:7000): the host is missing".into());
        }
        None => {
            bind_host(host)?;
        }
    };
    Ok(port)
}

/// A host without a port: a name or IPv4 address (letters, digits, '-', '.', '_', at most
/// 253 characters, as in DNS) or an IPv6 address.
fn bind_host(host: &str) -> Result<String, String> {
    if host.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok(format!("[{host}]"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    if host.is_empty() || host.len() > 253 || !host.chars().all(allowed) {
        return Err(format!(
            "{host:?} is not a host name or IP address (for a port, use HOST:PORT where an \
             address is asked for)"
        ));
    }
    Ok(host.to_string())
}

/// A default duration as the milliseconds a flag takes.
const fn ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputArg {
    Text,
    Json,
}

impl From<OutputArg> for dsys::Output {
    fn from(arg: OutputArg) -> dsys::Output {
        match arg {
            OutputArg::Text => dsys::Output::Text,
            OutputArg::Json => dsys::Output::Json,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo narrates on stdout; its in-process clients' info lines would only repeat it.
    let default_level = match cli.command {
        Command::Demo | Command::Bench(_) => "warn",
        _ => "info",
    };
    init_logger(default_level);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(why)) => {
            eprintln!("dsys: {why}");
            ExitCode::from(2)
        }
        Err(e) => {
            // The reason may quote a peer (a server's refusal, say): shown, never obeyed.
            eprintln!("dsys: {}", dsys::support::visible::visible(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// Starts `env_logger` with its usual line, `[TIME LEVEL module] message`, and one change:
/// the message goes through `visible`. Log lines quote what peers send (names, reasons),
/// and an operator's terminal must not take a peer's escape sequence as an order
/// (docs/security.md); doing it here covers every line of every role.
fn init_logger(default_level: &str) {
    use std::io::Write;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .format(|buf, record| {
            let style = buf.default_level_style(record.level());
            let message = record.args().to_string();
            writeln!(
                buf,
                "[{} {style}{:<5}{style:#} {}] {}",
                buf.timestamp(),
                record.level(),
                record.target(),
                dsys::support::visible::visible(&message)
            )
        })
        .init();
}

/// Runs the subcommand with the configuration its flags make.
fn run(command: Command) -> dsys::Result<()> {
    match command {
        Command::Coordinator(args) => coordinator::run(args.into_config()?),
        Command::Server(args) => server::run(args.into_config()?),
        Command::Client(args) => client::run(args.into_config()?),
        Command::Status(args) => status::run(&args.into_config()?),
        Command::Demo => demo::run(),
        Command::Bench(args) => bench::run(&args.into_config()),
    }
}
