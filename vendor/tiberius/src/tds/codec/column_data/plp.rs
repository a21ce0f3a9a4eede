use crate::sql_read_bytes::SqlReadBytes;
use futures_util::io::AsyncReadExt;

// Decode a partially length-prefixed type.
pub(crate) async fn decode<R>(src: &mut R, len: usize) -> crate::Result<Option<Vec<u8>>>
where
    R: SqlReadBytes + Unpin,
{
    match len {
        // Fixed size
        len if len < 0xffff => {
            let len = src.read_u16_le().await? as u64;

            match len {
                // NULL
                0xffff => Ok(None),
                _ => {
                    // PATCH(sql-databricks-bridge): one read of `len` bytes, not `len` reads
                    // of one byte.
                    let mut data = vec![0u8; len as usize];
                    src.read_exact(&mut data).await?;

                    Ok(Some(data))
                }
            }
        }
        // Unknown size, length-prefixed blobs
        _ => {
            let len = src.read_u64_le().await?;

            let mut data = match len {
                // NULL
                0xffffffffffffffff => return Ok(None),
                // Unknown size
                0xfffffffffffffffe => Vec::new(),
                // Known size
                _ => Vec::with_capacity(len as usize),
            };

            let mut chunk_data_left = 0;

            loop {
                if chunk_data_left == 0 {
                    // We have no chunk. Start a new one.
                    let chunk_size = src.read_u32_le().await? as usize;

                    if chunk_size == 0 {
                        break; // found a sentinel, we're done
                    } else {
                        chunk_data_left = chunk_size
                    }
                } else {
                    // PATCH(sql-databricks-bridge): read the chunk up to 64 KiB at a time,
                    // not byte by byte (memory still grows only with the data received).
                    let take = chunk_data_left.min(1 << 16);
                    let start = data.len();
                    data.resize(start + take, 0);
                    src.read_exact(&mut data[start..]).await?;
                    chunk_data_left -= take;
                }
            }

            Ok(Some(data))
        }
    }
}
