//! One BFD session in asynchronous mode (RFC 5880 §6), sans IO: packets
//! and the clock go in, packets to send and state changes come out. The
//! tokio driver owns the sockets and the timers; everything RFC 5880 says
//! about what to do with them is decided here.
//!
//! Not offered: demand mode, the echo function, authentication (a peer
//! asking for any of them gets a session without it, or none).

use std::time::{Duration, Instant};

use super::codec::{Control, Diag, State};

/// What the local system asks for (§6.8.1's bfd.DesiredMinTxInterval,
/// bfd.RequiredMinRxInterval, bfd.DetectMult).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub min_tx: Duration,
    pub min_rx: Duration,
    pub multiplier: u8,
}

/// While a session is not Up it sends no faster than once a second
/// (§6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// What the driver does after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this packet now.
    Send(Control),
    /// The session changed state (the BGP session follows Down at once).
    Changed { from: State, to: State, diag: Diag },
}

/// A received packet the session could not take (after the codec's
/// checks, those of §6.8.6 that need the session).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("Your Discriminator is zero in a packet of state {0:?}")]
    ZeroYourDiscr(State),
    #[error("Your Discriminator {0} is not this session's")]
    WrongDiscr(u32),
    #[error("the session is administratively down")]
    AdminDown,
}

impl Discard {
    pub fn reason(self) -> &'static str {
        match self {
            Discard::ZeroYourDiscr(_) => "zero_your_discriminator",
            Discard::WrongDiscr(_) => "unknown_discriminator",
            Discard::AdminDown => "admin_down",
        }
    }
}

/// One session's state variables (§6.8.1) and timers.
#[derive(Clone, Debug)]
pub struct Session {
    config: Config,
    local_discr: u32,
    state: State,
    diag: Diag,
    remote_discr: u32,
    remote_state: State,
    remote_min_rx: Duration,
    remote_min_tx: Duration,
    remote_multiplier: u8,
    /// A Poll Sequence is in progress: P set until a Final arrives.
    polling: bool,
    /// The configuration a Poll Sequence is replacing: until it ends, a
    /// slower transmit interval and a shorter RequiredMinRx do not take
    /// effect (§6.8.3).
    previous: Option<Config>,
    /// When the last valid packet arrived (detection runs from it).
    last_rx: Option<Instant>,
    next_tx: Instant,
}

impl Session {
    /// A session in Down with `local_discr` (unique and non-zero on this
    /// system: the driver allocates it). The first packet goes out at once.
    pub fn new(config: Config, local_discr: u32, now: Instant) -> Session {
        Session {
            config,
            local_discr,
            state: State::Down,
            diag: Diag::None,
            remote_discr: 0,
            remote_state: State::Down,
            // §6.8.1: initialised to 1 (µs) so the first packets flow.
            remote_min_rx: Duration::from_micros(1),
            remote_min_tx: Duration::ZERO,
            remote_multiplier: 0,
            polling: false,
            previous: None,
            last_rx: None,
            next_tx: now,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn diag(&self) -> Diag {
        self.diag
    }

    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// The negotiated intervals: (transmit, the remote's detection time as
    /// this side computes it). Zero detection time: nothing heard yet.
    pub fn negotiated(&self) -> (Duration, Duration) {
        (self.tx_interval(), self.detection_time())
    }

    /// The DesiredMinTxInterval this side advertises: the configured one
    /// while Up, else at least a second (§6.8.3).
    fn advertised_min_tx(&self) -> Duration {
        if self.state == State::Up {
            self.config.min_tx
        } else {
            self.config.min_tx.max(SLOW_TX)
        }
    }

    /// §6.8.7: the larger of what this side wants and the remote accepts.
    fn tx_interval(&self) -> Duration {
        let mut ours = self.advertised_min_tx();
        if let Some(old) = self.previous {
            ours = ours.min(old.min_tx);
        }
        ours.max(self.remote_min_rx)
    }

    /// §6.8.4 (asynchronous mode): the remote's Detect Mult times the
    /// larger of our RequiredMinRx and its DesiredMinTx.
    fn detection_time(&self) -> Duration {
        let mut min_rx = self.config.min_rx;
        if let Some(old) = self.previous {
            min_rx = min_rx.max(old.min_rx);
        }
        min_rx.max(self.remote_min_tx) * u32::from(self.remote_multiplier)
    }

    /// The packet this side sends now (§6.8.7), `final_` answering a Poll.
    fn packet(&self, final_: bool) -> Control {
        Control {
            diag: self.diag,
            state: self.state,
            // P and F are never set together.
            poll: self.polling && !final_,
            final_,
            cpi: false,
            demand: false,
            detect_mult: self.config.multiplier,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: self.advertised_min_tx(),
            required_min_rx: self.config.min_rx,
            required_min_echo_rx: Duration::ZERO,
        }
    }

    fn set_state(&mut self, to: State, diag: Diag, out: &mut Vec<Output>) {
        if to == self.state {
            return;
        }
        let from = self.state;
        self.state = to;
        self.diag = diag;
        // Going Up or leaving Up changes the advertised interval: a Poll
        // Sequence tells the remote (§6.8.3).
        if from == State::Up || to == State::Up {
            self.polling = true;
        }
        out.push(Output::Changed { from, to, diag });
    }

    /// A decoded packet from the remote (the driver has checked TTL/hop
    /// limit and demultiplexed it here, §6.8.6).
    pub fn receive(&mut self, p: &Control, now: Instant) -> Result<Vec<Output>, Discard> {
        if p.your_discr == 0 && !matches!(p.state, State::Down | State::AdminDown) {
            return Err(Discard::ZeroYourDiscr(p.state));
        }
        if p.your_discr != 0 && p.your_discr != self.local_discr {
            return Err(Discard::WrongDiscr(p.your_discr));
        }
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        let mut out = Vec::new();
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_min_rx = p.required_min_rx;
        self.remote_min_tx = p.desired_min_tx;
        self.remote_multiplier = p.detect_mult;
        self.last_rx = Some(now);
        if p.final_ {
            self.polling = false;
            self.previous = None;
        }
        match (self.state, p.state) {
            (State::Down | State::Init | State::Up, State::AdminDown) => {
                self.set_state(State::Down, Diag::NeighborSignaledSessionDown, &mut out);
            }
            (State::Down, State::Down) => self.set_state(State::Init, Diag::None, &mut out),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.set_state(State::Up, Diag::None, &mut out);
            }
            (State::Up, State::Down) => {
                self.set_state(State::Down, Diag::NeighborSignaledSessionDown, &mut out);
            }
            _ => {}
        }
        if p.poll {
            out.push(Output::Send(self.packet(true)));
        }
        Ok(out)
    }

    /// When [`Session::tick`] has something to do next.
    pub fn next_deadline(&self) -> Instant {
        match self.detection_deadline() {
            Some(d) => d.min(self.next_tx),
            None => self.next_tx,
        }
    }

    fn detection_deadline(&self) -> Option<Instant> {
        let at = self.last_rx?;
        matches!(self.state, State::Init | State::Up).then(|| at + self.detection_time())
    }

    /// Runs the timers: detection (§6.8.4: Init or Up with nothing heard for
    /// the detection time → Down, and the remote is forgotten) and periodic
    /// transmission (§6.8.7), jittered by `rand` to 75–100 % of the
    /// interval (75–90 % with a multiplier of 1).
    pub fn tick(&mut self, now: Instant, rand: u32) -> Vec<Output> {
        let mut out = Vec::new();
        if self.detection_deadline().is_some_and(|d| now >= d) {
            self.set_state(State::Down, Diag::ControlDetectionTimeExpired, &mut out);
            self.remote_discr = 0;
            self.remote_state = State::Down;
            self.remote_min_rx = Duration::from_micros(1);
            self.last_rx = None;
        }
        if now >= self.next_tx {
            // §6.8.7: no periodic packets while the remote asks for none.
            if !self.remote_min_rx.is_zero() {
                out.push(Output::Send(self.packet(false)));
            }
            let span = if self.config.multiplier == 1 { 16 } else { 26 };
            let percent = 75 + rand % span;
            self.next_tx = now + self.tx_interval() * percent / 100;
        }
        out
    }

    /// Takes the session administratively down (AdminDown is sent, the
    /// remote goes Down with "neighbor signaled") or back (Down, from
    /// which it comes Up again).
    pub fn set_admin_down(&mut self, down: bool, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        match (down, self.state) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => {}
            (true, _) => {
                self.set_state(State::AdminDown, Diag::AdministrativelyDown, &mut out);
                self.next_tx = now;
            }
            (false, State::AdminDown) => {
                self.set_state(State::Down, Diag::None, &mut out);
                self.next_tx = now;
            }
        }
        out
    }

    /// New intervals: while Up, a Poll Sequence announces them (§6.8.3).
    pub fn set_config(&mut self, config: Config, now: Instant) {
        if config == self.config {
            return;
        }
        if self.state == State::Up {
            self.previous.get_or_insert(self.config);
            self.polling = true;
            self.next_tx = now;
        }
        self.config = config;
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
