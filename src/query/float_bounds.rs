//! Parquet writers leave NaN out of floating-point columns' min and max
//! (row-group statistics and the page index), while DataFusion orders NaN
//! above every number (`f > 10` holds for NaN, and `max(f)` is NaN). Pruning
//! by those bounds, or answering `max(f)` from them, would drop the NaN rows
//! from the answer a full scan gives. So the footers Sheaf reads keep no
//! min or max for floating-point columns (their null counts stay): filters
//! on them are evaluated on the rows, and every other column prunes as
//! before.

use parquet::basic::{LogicalType, Type as PhysicalType};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData, RowGroupMetaData};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;
use std::sync::Arc;

/// `footer` without min and max for its floating-point columns; the same
/// footer when it has none.
pub fn without_float_bounds(footer: Arc<ParquetMetaData>) -> Arc<ParquetMetaData> {
    let schema = footer.file_metadata().schema_descr_ptr();
    let floats: Vec<bool> = schema
        .columns()
        .iter()
        .map(|c| {
            matches!(c.physical_type(), PhysicalType::FLOAT | PhysicalType::DOUBLE)
                || matches!(c.logical_type_ref(), Some(LogicalType::Float16))
        })
        .collect();
    if !floats.contains(&true) {
        return footer;
    }
    let mut builder = Arc::unwrap_or_clone(footer).into_builder();
    let row_groups = builder
        .take_row_groups()
        .into_iter()
        .map(|rg| {
            let columns: Vec<ColumnChunkMetaData> = rg
                .columns()
                .iter()
                .zip(&floats)
                .map(|(c, &float)| if float { unbounded(c) } else { c.clone() })
                .collect();
            RowGroupMetaData::into_builder(rg).set_column_metadata(columns).build()
        })
        .collect::<Result<Vec<_>, _>>();
    let row_groups = match row_groups {
        Ok(row_groups) => row_groups,
        // Rebuilding what was read cannot fail; were it to, no bounds at all.
        Err(_) => return Arc::new(builder.build()),
    };
    let column_index = builder.take_column_index().map(|index| {
        index
            .into_iter()
            .map(|columns| {
                columns
                    .into_iter()
                    .zip(&floats)
                    .map(|(c, &float)| if float { ColumnIndexMetaData::NONE } else { c })
                    .collect()
            })
            .collect()
    });
    Arc::new(builder.set_row_groups(row_groups).set_column_index(column_index).build())
}

/// A column chunk's metadata without min and max (null and distinct counts
/// kept).
fn unbounded(c: &ColumnChunkMetaData) -> ColumnChunkMetaData {
    let statistics = match c.statistics() {
        Some(Statistics::Float(s)) => {
            Some(Statistics::float(None, None, s.distinct_count(), s.null_count_opt(), false))
        }
        Some(Statistics::Double(s)) => {
            Some(Statistics::double(None, None, s.distinct_count(), s.null_count_opt(), false))
        }
        Some(Statistics::FixedLenByteArray(s)) => {
            Some(Statistics::fixed_len_byte_array(None, None, s.distinct_count(), s.null_count_opt(), false))
        }
        Some(_) | None => None,
    };
    let builder = c.clone().into_builder();
    match statistics {
        Some(statistics) => builder.set_statistics(statistics),
        None => builder.clear_statistics(),
    }
    .build()
    .unwrap_or_else(|_| c.clone())
}

#[cfg(test)]
mod tests {
    use super::without_float_bounds;
    use arrow::array::{Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use std::sync::Arc;

    #[test]
    fn float_columns_lose_their_bounds_and_keep_their_null_counts() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int64, false),
        ]));
        let f = Float64Array::from(vec![Some(1.0), Some(f64::NAN), None, Some(6.0)]);
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(f), Arc::new(Int64Array::from(vec![1, 2, 3, 4]))])
                .unwrap();
        let props = WriterProperties::builder().set_statistics_enabled(EnabledStatistics::Page).build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let footer = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&Bytes::from(out))
            .unwrap();
        let before = footer.row_group(0).column(0).statistics().unwrap().clone();
        assert!(before.max_bytes_opt().is_some(), "the writer records a max for f");
        let footer = without_float_bounds(Arc::new(footer));
        let rg = footer.row_group(0);
        let f = rg.column(0).statistics().unwrap();
        assert!(f.min_bytes_opt().is_none() && f.max_bytes_opt().is_none());
        assert_eq!(f.null_count_opt(), Some(1));
        assert!(rg.column(1).statistics().unwrap().max_bytes_opt().is_some(), "other columns keep theirs");
        let index = footer.column_index().unwrap();
        assert!(matches!(index[0][0], parquet::file::page_index::column_index::ColumnIndexMetaData::NONE));
        assert!(!matches!(index[0][1], parquet::file::page_index::column_index::ColumnIndexMetaData::NONE));
        assert_eq!(rg.num_rows(), 4);
    }
}
