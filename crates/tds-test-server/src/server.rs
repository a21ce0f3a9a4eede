//! The TCP side: accept loop, per-connection socket reader/writer tasks, fault injection state.
//! Each connection gets an engine thread (see `session`) connected through bounded channels.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::FaultPlan;
use crate::error::Error;
use crate::wire::{HEADER_LEN, Outgoing, Packet, ptype};

/// Armed faults, shared by all connections (u64::MAX = disarmed).
#[derive(Debug)]
pub(crate) struct FaultState {
    pub drop_after_rows: AtomicU64,
    pub drop_after_packets: AtomicU64,
    pub packets_sent: AtomicU64,
}

impl FaultState {
    pub fn new(plan: &FaultPlan) -> Self {
        let s = FaultState {
            drop_after_rows: AtomicU64::new(u64::MAX),
            drop_after_packets: AtomicU64::new(u64::MAX),
            packets_sent: AtomicU64::new(0),
        };
        s.arm(plan);
        s
    }

    /// Replace the armed faults and restart the packet count.
    pub fn arm(&self, plan: &FaultPlan) {
        self.packets_sent.store(0, Ordering::SeqCst);
        self.drop_after_rows
            .store(plan.drop_after_rows.unwrap_or(u64::MAX), Ordering::SeqCst);
        self.drop_after_packets.store(
            plan.drop_after_packets.unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

/// State shared by the server and all its sessions.
#[derive(Debug)]
pub(crate) struct Shared {
    /// What `rusqlite::Connection::open` gets (a path or a `file:` URI).
    pub db_uri: String,
    pub faults: Arc<FaultState>,
    pub next_spid: AtomicU16,
    /// Armed [`crate::TdsServer::write_before`]: statement prefix (upper case) and SQLite SQL.
    pub write_before: std::sync::Mutex<Option<(String, String)>>,
    /// TCP connections accepted since the start (each client login is one).
    pub connections: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// The SQLite SQL to run before `statement` (a translated statement), disarming the hook.
    pub fn take_write_before(&self, statement: &str) -> Option<String> {
        let mut armed = self.write_before.lock().unwrap_or_else(|p| p.into_inner());
        let fires = armed.as_ref().is_some_and(|(prefix, _)| {
            statement
                .trim_start()
                .get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
        });
        if fires {
            armed.take().map(|(_, sql)| sql)
        } else {
            None
        }
    }
}

/// Read one packet; Ok(None) on a clean EOF before a header.
async fn read_packet(rd: &mut tokio::net::tcp::OwnedReadHalf) -> Result<Option<Packet>, Error> {
    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = rd.read(&mut hdr[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(Error::protocol("EOF inside a packet header"))
            };
        }
        got += n;
    }
    let len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if len < HEADER_LEN {
        return Err(Error::protocol(format!("packet length {len} < 8")));
    }
    let mut payload = vec![0u8; len - HEADER_LEN];
    rd.read_exact(&mut payload).await?;
    Ok(Some(Packet {
        ty: hdr[0],
        status: hdr[1],
        payload: Bytes::from(payload),
    }))
}

/// Accept connections until `stop` flips.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, peer, shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let spid = shared.next_spid.fetch_add(1, Ordering::Relaxed);
    shared.connections.fetch_add(1, Ordering::Relaxed);
    tracing::debug!("connection {spid} from {peer}");
    let (mut rd, mut wr) = stream.into_split();
    let (in_tx, in_rx) = mpsc::channel::<Packet>(32);
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(16);
    let attn = Arc::new(AtomicBool::new(false));
    {
        let attn = attn.clone();
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tds-session-{spid}"))
            .spawn(move || crate::session::run(in_rx, out_tx, attn, shared, spid));
        if let Err(e) = spawned {
            tracing::error!("cannot start session thread: {e}");
            return;
        }
    }
    let (closed_tx, mut closed_rx) = watch::channel(false);
    let writer = tokio::spawn(async move {
        while let Some(o) = out_rx.recv().await {
            match o {
                Outgoing::Data(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Outgoing::Close => break,
            }
        }
        let _ = wr.shutdown().await;
        let _ = closed_tx.send(true);
    });
    loop {
        tokio::select! {
            r = read_packet(&mut rd) => match r {
                Ok(Some(p)) => {
                    if p.ty == ptype::ATTENTION {
                        attn.store(true, Ordering::SeqCst);
                    }
                    if in_tx.send(p).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("connection {spid}: {e}; closing");
                    break;
                }
            },
            _ = closed_rx.changed() => break,
            _ = stop.changed() => break,
        }
    }
    drop(in_tx);
    if *stop.borrow() {
        writer.abort();
    } else {
        let _ = writer.await;
    }
    tracing::debug!("connection {spid} closed");
}
