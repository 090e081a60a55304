//! Fixed answers' schemas and schema encodings of Flight SQL.

use arrow::datatypes::Schema;
use arrow_flight::{IpcMessage, SchemaAsIpc};
use bytes::Bytes;
use tonic::Status;

/// The parameter types a prepared statement advertises: a parameter whose
/// type the planner could not infer (`SELECT ?`) is offered as a string, so
/// drivers that bind by the advertised type (JDBC) can bind it; the value
/// is then cast where the statement uses it.
pub(super) fn advertised(parameters: &Schema) -> Schema {
    use arrow::datatypes::{DataType, Field};
    Schema::new(
        parameters
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Null => Field::new(f.name(), DataType::Utf8, true),
                _ => f.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    )
}

/// The IPC encoding of a schema, as Flight SQL results carry it.
pub(super) fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let options = arrow::ipc::writer::IpcWriteOptions::default();
    let message: IpcMessage = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e: arrow::error::ArrowError| Status::internal(format!("encoding the schema: {e}")))?;
    Ok(message.0)
}

/// The columns of `GetPrimaryKeys`.
pub(super) fn keys_schema() -> Schema {
    use arrow::datatypes::{DataType, Field};
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

/// The columns of `GetExportedKeys`, `GetImportedKeys` and
/// `GetCrossReference`.
pub(super) fn foreign_keys_schema() -> Schema {
    use arrow::datatypes::{DataType, Field};
    Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}
