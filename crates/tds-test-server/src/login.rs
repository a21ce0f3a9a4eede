//! LOGIN7 message parsing.
//! Credentials are not checked; the user name "bad" and the password [`WRONG_PASSWORD`] are
//! rejected so tests can see a login failure.

use crate::error::Error;
use crate::wire::{Input, SliceReader, utf16_to_string};

/// The one password this server refuses (error 18456, as SQL Server answers a wrong password).
pub const WRONG_PASSWORD: &str = "wrong-password";

/// The fields of LOGIN7 this server uses.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub tds_version: u32,
    pub packet_size: u32,
    pub user: String,
    pub password: String,
    pub app_name: String,
    pub database: String,
}

fn field(msg: &[u8], at: usize) -> Result<String, Error> {
    let mut r = SliceReader::new(msg);
    r.skip(at)?;
    let off = r.u16le()? as usize;
    let len = r.u16le()? as usize;
    let mut r = SliceReader::new(msg);
    r.skip(off)?;
    r.utf16(len)
}

/// The password field, undoing LOGIN7's obfuscation (each byte's nibbles swapped, then XOR 0xA5).
fn password(msg: &[u8]) -> Result<String, Error> {
    let mut r = SliceReader::new(msg);
    r.skip(44)?;
    let off = r.u16le()? as usize;
    let len = r.u16le()? as usize;
    let raw = msg
        .get(off..off + len * 2)
        .ok_or_else(|| Error::protocol("LOGIN7 password outside the message"))?;
    let plain: Vec<u8> = raw.iter().map(|b| (b ^ 0xA5).rotate_left(4)).collect();
    Ok(utf16_to_string(&plain))
}

/// Parse a complete LOGIN7 message.
pub(crate) fn parse_login7(msg: &[u8]) -> Result<Login, Error> {
    if msg.len() < 94 {
        return Err(Error::protocol("LOGIN7 too short"));
    }
    let mut r = SliceReader::new(msg);
    let _len = r.u32le()?;
    let tds_version = r.u32le()?;
    let packet_size = r.u32le()?;
    Ok(Login {
        tds_version,
        packet_size,
        user: field(msg, 40)?,
        password: password(msg)?,
        app_name: field(msg, 48)?,
        database: field(msg, 68)?,
    })
}
