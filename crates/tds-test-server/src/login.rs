//! LOGIN7 message parsing.
//! Credentials are not checked; only the user name "bad" is rejected so tests can see a login failure.

use crate::error::Error;
use crate::wire::{Input, SliceReader};

/// The fields of LOGIN7 this server uses.
#[derive(Debug, Clone)]
pub(crate) struct Login {
    pub tds_version: u32,
    pub packet_size: u32,
    pub user: String,
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
        app_name: field(msg, 48)?,
        database: field(msg, 68)?,
    })
}
