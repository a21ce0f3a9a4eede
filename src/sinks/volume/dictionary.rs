//! Parquet dictionary encoding, chosen per column from the first rows a file gets.
//!
//! A dictionary pays for columns that repeat their values (countries, statuses, dates). For a
//! column whose values are nearly all distinct (keys, GUIDs, amounts, timestamps) the writer
//! hashes every value into a dictionary that only grows until parquet-rs gives up on it and
//! writes the values plainly anyway: profiling an extraction put a fifth of its CPU there. Such
//! columns are written PLAIN from the start. Every Parquet reader reads both encodings.

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::common::hash_utils::{RandomState, create_hashes};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Rows of a file's first batch that are looked at.
pub(super) const SAMPLE_ROWS: usize = 8192;
/// Fewer rows than this say too little: the writer's defaults are kept.
const MIN_SAMPLE_ROWS: usize = 1024;

/// `props`, with dictionary encoding off for each top-level column of which more than 90 % of
/// the first [`SAMPLE_ROWS`] rows of `first` are distinct.
pub(super) fn for_sample(props: &WriterProperties, first: &RecordBatch) -> WriterProperties {
    let rows = first.num_rows().min(SAMPLE_ROWS);
    if rows < MIN_SAMPLE_ROWS {
        return props.clone();
    }
    let sample = first.slice(0, rows);
    let state = RandomState::default();
    let mut hashes = vec![0u64; rows];
    let mut builder = props.clone().into_builder();
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        if field.data_type().is_nested() || *field.data_type() == DataType::Boolean {
            continue;
        }
        hashes.fill(0);
        if create_hashes([column], &state, &mut hashes).is_err() {
            continue;
        }
        hashes.sort_unstable();
        hashes.dedup();
        if hashes.len() * 10 > rows * 9 {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
        hashes.resize(rows, 0);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    fn path(name: &str) -> ColumnPath {
        ColumnPath::from(name)
    }

    #[test]
    fn distinct_columns_go_plain_and_repeating_ones_keep_their_dictionary() {
        let n = 5000i64;
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
            ),
            (
                "country",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["CO", "MX", "BR"][i as usize % 3]),
                )),
            ),
            // 4,500 distinct values in 5,000 rows: 90 %, not more; the dictionary stays.
            (
                "code",
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 4500))),
            ),
        ])
        .unwrap();
        let props = for_sample(&WriterProperties::default(), &batch);
        assert!(!props.dictionary_enabled(&path("id")));
        assert!(props.dictionary_enabled(&path("country")));
        assert!(props.dictionary_enabled(&path("code")));

        // A first batch too small to judge keeps the defaults.
        let props = for_sample(&WriterProperties::default(), &batch.slice(0, 100));
        assert!(props.dictionary_enabled(&path("id")));
    }
}
