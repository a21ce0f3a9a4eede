//! Hive-style partition folders of a volume sink: rows split by a column's values, one Parquet
//! writer per `column=value/` folder, each rolling to a new file after `max_rows_per_file`.

use std::collections::BTreeMap;
use std::sync::Arc;

use deltalake::arrow::array::{Array, RecordBatch, UInt32Array};
use deltalake::arrow::compute::{cast, take};
use deltalake::arrow::datatypes::{DataType, Schema, SchemaRef};
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjPath;
use parquet::arrow::async_writer::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;

use super::dictionary;
use super::join;
use super::manifest::StagedFile;

/// Files being written for one partition folder.
pub(super) struct PartitionWriter {
    pub(super) dir: String,
    pub(super) current: Option<OpenFile>,
    pub(super) next_index: usize,
}

pub(super) struct OpenFile {
    pub(super) relative: String,
    pub(super) writer: AsyncArrowWriter<BufWriter>,
    pub(super) rows: usize,
}

impl PartitionWriter {
    pub(super) fn open(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        staging: &ObjPath,
        base_name: &str,
        schema: &SchemaRef,
        props: &WriterProperties,
        first: &RecordBatch,
    ) -> parquet::errors::Result<&mut OpenFile> {
        if self.current.is_none() {
            let name = format!("{base_name}-{:05}.parquet", self.next_index);
            self.next_index += 1;
            let relative = if self.dir.is_empty() {
                name
            } else {
                format!("{}/{name}", self.dir)
            };
            let object = BufWriter::new(Arc::clone(store), join(staging, &relative));
            // The file's first rows choose its columns' encodings.
            let props = dictionary::for_sample(props, first);
            let writer = AsyncArrowWriter::try_new(object, schema.clone(), Some(props))?;
            self.current = Some(OpenFile {
                relative,
                writer,
                rows: 0,
            });
        }
        Ok(self.current.as_mut().expect("opened above"))
    }

    pub(super) async fn close_current(&mut self) -> parquet::errors::Result<StagedFile> {
        let open = self.current.take().expect("a file is open");
        open.writer.close().await?;
        Ok(StagedFile {
            relative: open.relative,
            rows: open.rows as u64,
            bytes: 0,
        })
    }
}

/// Splits a batch by the values of one column; the column is dropped (it is in the folder name).
pub(super) fn split_by_partition(
    batch: &RecordBatch,
    index: usize,
    column: &str,
) -> deltalake::arrow::error::Result<Vec<(String, RecordBatch)>> {
    let values = cast(batch.column(index), &DataType::Utf8)?;
    let values = values
        .as_any()
        .downcast_ref::<deltalake::arrow::array::StringArray>()
        .expect("cast to Utf8 gives a StringArray");
    let mut groups: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let dir = if values.is_null(row) {
            format!("{column}=__HIVE_DEFAULT_PARTITION__")
        } else {
            format!("{column}={}", escape_partition_value(values.value(row)))
        };
        groups.entry(dir).or_default().push(row as u32);
    }
    let mut schema_fields = batch.schema().fields().to_vec();
    schema_fields.remove(index);
    let schema = Arc::new(Schema::new(schema_fields));
    groups
        .into_iter()
        .map(|(dir, rows)| {
            let indices = UInt32Array::from(rows);
            let columns = batch
                .columns()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .map(|(_, c)| take(c.as_ref(), &indices, None))
                .collect::<deltalake::arrow::error::Result<Vec<_>>>()?;
            Ok((dir, RecordBatch::try_new(schema.clone(), columns)?))
        })
        .collect()
}

/// Percent-encodes what is not safe in a folder name, like Hive does.
fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if out.is_empty() || out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_escaped() {
        assert_eq!(escape_partition_value("Bogotá D.C."), "Bogot%C3%A1 D.C.");
        assert_eq!(escape_partition_value("a/b"), "a%2Fb");
        assert_eq!(escape_partition_value(".."), "%2E%2E");
    }
}
