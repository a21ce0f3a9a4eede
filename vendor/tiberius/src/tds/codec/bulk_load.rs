use asynchronous_codec::BytesMut;
use futures_util::io::{AsyncRead, AsyncWrite};
use tracing::{event, Level};

use crate::{
    client::Connection, sql_read_bytes::SqlReadBytes, BytesMutWithDataColumns, ExecuteResult,
};

use super::{
    BytesMutWithTypeInfo, ColumnData, Encode, FixedLenType, MetaDataColumn, PacketHeader,
    PacketStatus, TokenColMetaData, TokenDone, TokenRow, TypeInfo, VarLenType, HEADER_BYTES,
};

/// PATCH(sql-databricks-bridge): how the values of one column of a bulk load are framed on the
/// wire, as the server described the column (MS-TDS 2.2.5.2 and 2.2.5.5.1). A caller that encodes
/// rows itself ([`BulkLoadRequest::buffer_mut`]) writes each value in its column's frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkFrame {
    /// A fixed-length type: the value's bytes only; NULL cannot be sent.
    Fixed,
    /// A one-byte length, then the bytes; NULL is a length of 0.
    ByteLen,
    /// A two-byte length, then the bytes (at most `max` of them); NULL is `0xFFFF`.
    UShortLen {
        /// The column's length in bytes.
        max: usize,
    },
    /// Any other framing (PLP `max` types, text, image, xml, ...): encode with
    /// [`BulkLoadRequest::encode_value`].
    Other,
}

impl BulkFrame {
    fn of(ty: &TypeInfo) -> Self {
        match ty {
            TypeInfo::FixedLen(FixedLenType::Null) => BulkFrame::Other,
            TypeInfo::FixedLen(_) => BulkFrame::Fixed,
            TypeInfo::VarLenSized(vlc) => match vlc.r#type() {
                VarLenType::BigVarChar
                | VarLenType::BigChar
                | VarLenType::NVarchar
                | VarLenType::NChar
                | VarLenType::BigVarBin
                | VarLenType::BigBinary
                    if vlc.len() < 0xffff =>
                {
                    BulkFrame::UShortLen { max: vlc.len() }
                }
                VarLenType::Guid
                | VarLenType::Intn
                | VarLenType::Bitn
                | VarLenType::Floatn
                | VarLenType::Datetimen => BulkFrame::ByteLen,
                #[cfg(feature = "tds73")]
                VarLenType::Daten
                | VarLenType::Timen
                | VarLenType::Datetime2
                | VarLenType::DatetimeOffsetn => BulkFrame::ByteLen,
                _ => BulkFrame::Other,
            },
            TypeInfo::VarLenSizedPrecision { ty, .. }
                if *ty == VarLenType::Decimaln || *ty == VarLenType::Numericn =>
            {
                BulkFrame::ByteLen
            }
            _ => BulkFrame::Other,
        }
    }
}

/// A handler for a bulk insert data flow.
#[derive(Debug)]
pub struct BulkLoadRequest<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    connection: &'a mut Connection<S>,
    packet_id: u8,
    buf: BytesMut,
    columns: Vec<MetaDataColumn<'a>>,
}

impl<'a, S> BulkLoadRequest<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    pub(crate) fn new(
        connection: &'a mut Connection<S>,
        columns: Vec<MetaDataColumn<'a>>,
    ) -> crate::Result<Self> {
        let packet_id = connection.context_mut().next_packet_id();
        let mut buf = BytesMut::new();

        let cmd = TokenColMetaData {
            columns: columns.clone(),
        };

        cmd.encode(&mut buf)?;

        let this = Self {
            connection,
            packet_id,
            buf,
            columns,
        };

        Ok(this)
    }

    /// Adds a new row to the bulk insert, flushing only when having a full packet of data.
    ///
    /// # Warning
    ///
    /// After the last row, [`finalize`] must be called to flush the buffered
    /// data and for the data to actually be available in the table.
    ///
    /// [`finalize`]: #method.finalize
    pub async fn send(&mut self, row: TokenRow<'a>) -> crate::Result<()> {
        let mut buf_with_columns = BytesMutWithDataColumns::new(&mut self.buf, &self.columns);

        row.encode(&mut buf_with_columns)?;
        self.write_packets().await?;

        Ok(())
    }

    /// PATCH(sql-databricks-bridge): the framing of each column's values, in the order of the
    /// load's columns.
    pub fn column_frames(&self) -> Vec<BulkFrame> {
        self.columns
            .iter()
            .map(|c| BulkFrame::of(&c.base.ty))
            .collect()
    }

    /// PATCH(sql-databricks-bridge): the unsent bytes of the load. A caller may append whole
    /// `ROW` tokens (`0xD1`, then each column's value in its [`BulkFrame`], or through
    /// [`encode_value_into`](Self::encode_value_into)), and truncate what it appended, then
    /// send them with [`flush_packets`](Self::flush_packets). Anything else corrupts the load.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// PATCH(sql-databricks-bridge): appends `value` to `dst` encoded as [`send`](Self::send)
    /// encodes it for column `column` (0-based).
    pub fn encode_value_into(
        &self,
        column: usize,
        value: ColumnData<'a>,
        dst: &mut BytesMut,
    ) -> crate::Result<()> {
        let column = self.columns.get(column).ok_or_else(|| {
            crate::Error::BulkInput(format!("the load has no column {column}").into())
        })?;
        value.encode(&mut BytesMutWithTypeInfo::new(dst).with_type_info(&column.base.ty))
    }

    /// PATCH(sql-databricks-bridge): appends `value` to the load's buffer encoded for column
    /// `column`; see [`buffer_mut`](Self::buffer_mut).
    pub fn encode_value(&mut self, column: usize, value: ColumnData<'a>) -> crate::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.encode_value_into(column, value, &mut buf);
        self.buf = buf;
        result
    }

    /// PATCH(sql-databricks-bridge): sends the buffer's whole packets; the rest waits for more
    /// rows or [`finalize`](Self::finalize).
    pub async fn flush_packets(&mut self) -> crate::Result<()> {
        self.write_packets().await
    }

    /// Ends the bulk load, flushing all pending data to the wire.
    ///
    /// This method must be called after sending all the data to flush all
    /// pending data and to get the server actually to store the rows to the
    /// table.
    pub async fn finalize(mut self) -> crate::Result<ExecuteResult> {
        TokenDone::default().encode(&mut self.buf)?;
        self.write_packets().await?;

        let mut header = PacketHeader::bulk_load(self.packet_id);
        header.set_status(PacketStatus::EndOfMessage);

        let data = self.buf.split();

        event!(
            Level::TRACE,
            "Finalizing a bulk insert ({} bytes)",
            data.len() + HEADER_BYTES,
        );

        self.connection.write_to_wire(header, data).await?;
        self.connection.flush_sink().await?;

        ExecuteResult::new(self.connection).await
    }

    async fn write_packets(&mut self) -> crate::Result<()> {
        let packet_size = (self.connection.context().packet_size() as usize) - HEADER_BYTES;

        while self.buf.len() > packet_size {
            let header = PacketHeader::bulk_load(self.packet_id);
            let data = self.buf.split_to(packet_size);

            event!(
                Level::TRACE,
                "Bulk insert packet ({} bytes)",
                data.len() + HEADER_BYTES,
            );

            self.connection.write_to_wire(header, data).await?;
        }

        Ok(())
    }
}
