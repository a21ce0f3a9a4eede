//! Writers for the server-to-client tokens: LOGINACK, ENVCHANGE, COLMETADATA, ROW, DONE, ERROR.
//! Also the PRELOGIN response payload. Layouts follow MS-TDS as decoded by tiberius 0.12.

use crate::error::SqlError;
use crate::types::{COLLATION, SqlType};
use crate::wire::ResponseWriter;

/// DONE status bits.
pub(crate) mod done {
    pub const FINAL: u16 = 0x00;
    pub const MORE: u16 = 0x01;
    pub const ERROR: u16 = 0x02;
    pub const COUNT: u16 = 0x10;
    pub const ATTN: u16 = 0x20;
}

/// Token ids.
pub(crate) mod tok {
    pub const COLMETADATA: u8 = 0x81;
    pub const ROW: u8 = 0xD1;
    pub const DONE: u8 = 0xFD;
    pub const DONEPROC: u8 = 0xFE;
    pub const DONEINPROC: u8 = 0xFF;
    pub const RETURNSTATUS: u8 = 0x79;
    pub const RETURNVALUE: u8 = 0xAC;
}

/// Name reported in LOGINACK and ERROR tokens.
pub(crate) const SERVER_NAME: &str = "tds-test-server";
/// Version reported in PRELOGIN/LOGINACK (SQL Server 2019 RTM).
pub(crate) const VERSION: (u8, u8, u16) = (15, 0, 2000);

/// Payload of the PRELOGIN response: VERSION, ENCRYPTION=NOT_SUP, INSTOPT, THREADID (empty), MARS=0.
pub(crate) fn prelogin_response() -> Vec<u8> {
    let (major, minor, build) = VERSION;
    let options: [(u8, Vec<u8>); 5] = [
        (
            0x00,
            vec![major, minor, (build >> 8) as u8, build as u8, 0, 0],
        ),
        (0x01, vec![0x02]),
        (0x02, vec![0x00]),
        (0x03, vec![]),
        (0x04, vec![0x00]),
    ];
    let mut head = Vec::new();
    let mut data = Vec::new();
    let mut offset = (options.len() * 5 + 1) as u16;
    for (id, value) in &options {
        head.push(*id);
        head.extend_from_slice(&offset.to_be_bytes());
        head.extend_from_slice(&(value.len() as u16).to_be_bytes());
        offset += value.len() as u16;
        data.extend_from_slice(value);
    }
    head.push(0xFF);
    head.extend(data);
    head
}

impl ResponseWriter {
    fn env_change(&mut self, ty: u8, new: &[u8], old: &[u8]) {
        self.put_u8(0xE3);
        self.put_u16((1 + 1 + new.len() + 1 + old.len()) as u16);
        self.put_u8(ty);
        self.put_u8(new.len() as u8);
        self.put(new);
        self.put_u8(old.len() as u8);
        self.put(old);
    }

    fn env_change_str(&mut self, ty: u8, new: &str, old: &str) {
        let n: Vec<u16> = new.encode_utf16().take(255).collect();
        let o: Vec<u16> = old.encode_utf16().take(255).collect();
        self.put_u8(0xE3);
        self.put_u16((1 + 1 + n.len() * 2 + 1 + o.len() * 2) as u16);
        self.put_u8(ty);
        self.put_u8(n.len() as u8);
        for u in n {
            self.put_u16(u);
        }
        self.put_u8(o.len() as u8);
        for u in o {
            self.put_u16(u);
        }
    }

    /// ENVCHANGE database (type 1).
    pub fn env_database(&mut self, new: &str, old: &str) {
        self.env_change_str(1, new, old);
    }

    /// The login response tokens before the final DONE.
    pub fn login_ack(&mut self, database: &str, packet_size: usize, tds_version: u32) {
        self.env_database(database, "master");
        self.env_change(7, &COLLATION, &[]);
        self.env_change_str(2, "us_english", "");
        let ps = packet_size.to_string();
        self.env_change_str(4, &ps, &ps);
        let prog: Vec<u16> = "Microsoft SQL Server".encode_utf16().collect();
        self.put_u8(0xAD);
        self.put_u16((1 + 4 + 1 + prog.len() * 2 + 4) as u16);
        self.put_u8(1);
        self.put(&tds_version.to_be_bytes());
        self.put_u8(prog.len() as u8);
        for u in prog {
            self.put_u16(u);
        }
        let (major, minor, build) = VERSION;
        self.put(&[major, minor, (build >> 8) as u8, build as u8]);
    }

    /// ENVCHANGE begin transaction (type 8) with an 8-byte descriptor.
    pub fn env_begin_tran(&mut self, descriptor: u64) {
        self.env_change(8, &descriptor.to_le_bytes(), &[]);
    }

    /// ENVCHANGE commit (type 9) or rollback (type 10) of the transaction `descriptor`.
    pub fn env_end_tran(&mut self, commit: bool, descriptor: u64) {
        self.env_change(if commit { 9 } else { 10 }, &[], &descriptor.to_le_bytes());
    }

    /// DONE / DONEPROC / DONEINPROC with an 8-byte row count.
    pub fn done(&mut self, token: u8, status: u16, rows: u64) {
        self.put_u8(token);
        self.put_u16(status);
        self.put_u16(0xC1);
        if self.short_done_counts {
            self.put_u32(rows.min(u32::MAX as u64) as u32);
        } else {
            self.put_u64(rows);
        }
    }

    /// RETURNSTATUS 0 (after an RPC).
    pub fn return_status(&mut self, status: i32) {
        self.put_u8(tok::RETURNSTATUS);
        self.put(&status.to_le_bytes());
    }

    /// RETURNVALUE of an `int OUTPUT` parameter (the handle of `sp_prepare`/`sp_prepexec`):
    /// ordinal, name, status 0x01 (output parameter), user type, flags, TYPE_INFO INTN(4), value.
    pub fn return_value_int(&mut self, ordinal: u16, name: &str, value: i32) {
        self.put_u8(tok::RETURNVALUE);
        self.put_u16(ordinal);
        self.put_b_varchar(name);
        self.put_u8(0x01);
        self.put_u32(0);
        self.put_u16(0x0001);
        self.put(&[0x26, 4, 4]);
        self.put(&value.to_le_bytes());
    }

    /// ERROR token.
    pub fn error(&mut self, e: &SqlError) {
        let msg: Vec<u16> = e.message.encode_utf16().take(65535).collect();
        let server: Vec<u16> = SERVER_NAME.encode_utf16().collect();
        let len = 4 + 1 + 1 + 2 + msg.len() * 2 + 1 + server.len() * 2 + 1 + 4;
        self.put_u8(0xAA);
        self.put_u16(len as u16);
        self.put_u32(e.number);
        self.put_u8(e.state);
        self.put_u8(e.class);
        self.put_u16(msg.len() as u16);
        for u in msg {
            self.put_u16(u);
        }
        self.put_u8(server.len() as u8);
        for u in server {
            self.put_u16(u);
        }
        self.put_u8(0);
        self.put_u32(1);
    }

    /// COLMETADATA for the given columns. `updateable` sets flag 0x0008 (needed by bulk insert).
    pub fn col_metadata(&mut self, cols: &[(String, SqlType)], updateable: bool) {
        self.put_u8(tok::COLMETADATA);
        self.put_u16(cols.len() as u16);
        let flags: u16 = 0x0001 | if updateable { 0x0008 } else { 0 };
        for (name, ty) in cols {
            self.put_u32(0);
            self.put_u16(flags);
            ty.write_type_info(self);
            self.put_b_varchar(name);
        }
    }
}
