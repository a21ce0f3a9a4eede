use crate::{error::Error, numeric::Numeric, sql_read_bytes::SqlReadBytes, ColumnData};

pub(crate) async fn decode<R>(src: &mut R, len: u8) -> crate::Result<ColumnData<'static>>
where
    R: SqlReadBytes + Unpin,
{
    // PATCH(sql-databricks-bridge): money is an exact count of 1/10,000 units; it is returned
    // as a `Numeric` of scale 4 (upstream: an `f64`, exact only to 15 significant digits).
    let res = match len {
        0 => ColumnData::Numeric(None),
        4 => ColumnData::Numeric(Some(Numeric::new_with_scale(
            i128::from(src.read_i32_le().await?),
            4,
        ))),
        8 => ColumnData::Numeric(Some({
            let high = i64::from(src.read_i32_le().await?);
            let low = i64::from(src.read_u32_le().await?);
            Numeric::new_with_scale(i128::from((high << 32) | low), 4)
        })),
        _ => {
            return Err(Error::Protocol(
                format!("money: length of {} is invalid", len).into(),
            ))
        }
    };

    Ok(res)
}
