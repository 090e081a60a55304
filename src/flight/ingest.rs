//! Flight SQL bulk ingest: a DoPut whose descriptor is a
//! `CommandStatementIngest` (what ADBC's `adbc_ingest` and the Flight SQL
//! JDBC driver send) is written as one table through a write session of its
//! own, exactly as a client's `write` would, and answered with Flight SQL's
//! `DoPutUpdateResult` (the rows written).
//!
//! Names: the command's `schema` (ADBC's `db_schema_name`) is the package
//! `owner/name` and its `table` the table's path in it (a folder, or a
//! `.parquet` file); without a `schema`, `table` is the whole
//! `owner/name/path`. Table options: `if_exists` FAIL (the default) refuses an
//! existing table, APPEND adds a part to its folder (and is refused for an
//! existing single-file table, which it could only replace), REPLACE
//! replaces it;
//! `if_not_exist` FAIL refuses a table that does not exist. Temporary tables
//! and transactions are refused (UNIMPLEMENTED).

use crate::auth::Principal;
use crate::proto;
use crate::query::Engine;
use crate::registry::{PackageRef, Revision};
use arrow_flight::FlightData;
use arrow_flight::FlightDescriptor;
use arrow_flight::error::FlightError;
use arrow_flight::sql::{CommandStatementIngest, DoPutUpdateResult, ProstMessageExt};
use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
use futures::Stream;
use prost::Message;
use tonic::Status;

/// The ingest command a DoPut descriptor holds, if it is one.
pub fn command(descriptor: &FlightDescriptor) -> Result<Option<CommandStatementIngest>, Status> {
    let Ok(any) = prost_types::Any::decode(descriptor.cmd.as_ref()) else { return Ok(None) };
    if any.type_url != CommandStatementIngest::type_url() {
        return Ok(None);
    }
    CommandStatementIngest::decode(any.value.as_slice())
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("the CMD descriptor is not a valid CommandStatementIngest: {e}")))
}

/// `owner/name` and the table path the command names.
fn target(command: &CommandStatementIngest) -> Result<(String, String), Status> {
    let bad = |why: &str| {
        Status::invalid_argument(format!(
            "bulk ingest into {}: {why}",
            crate::query::limits::excerpt(&format!("{}.{}", command.schema.as_deref().unwrap_or(""), command.table))
        ))
    };
    if let Some(catalog) = command.catalog.as_deref().filter(|c| !c.is_empty() && *c != crate::sql::CATALOG) {
        return Err(bad(&format!(
            "there is no catalog {}; Sheaf's one catalog is {}",
            crate::query::limits::excerpt(catalog),
            crate::sql::CATALOG
        )));
    }
    let table = command.table.trim_matches('/');
    let (package, path) = match command.schema.as_deref().filter(|s| !s.is_empty()) {
        Some(schema) => (schema.to_owned(), table.to_owned()),
        None => {
            let mut pieces = table.splitn(3, '/');
            match (pieces.next(), pieces.next(), pieces.next()) {
                (Some(owner), Some(name), Some(path)) => (format!("{owner}/{name}"), path.to_owned()),
                _ => return Err(bad("name the package as the schema (owner/name), or the table as owner/name/path")),
            }
        }
    };
    if path.is_empty() {
        return Err(bad("the table needs a path inside the package"));
    }
    // SQL names a package's manifest table so (exactly: identifiers match
    // case-sensitively once unquoted ones are folded to lowercase); a table
    // ingested under that name could never be read back.
    if path == crate::sql::MANIFEST_TABLE {
        return Err(bad(&format!(
            "{} is reserved: SQL reads it as the table of the package's entries; choose another table name",
            crate::sql::MANIFEST_TABLE
        )));
    }
    if let Some(why) = crate::query::session_table_problem(&path) {
        return Err(bad(&why));
    }
    Ok((package, path))
}

/// Writes the stream as the command's table; answers `DoPutUpdateResult`.
pub async fn ingest(
    engine: &Engine,
    command: CommandStatementIngest,
    flight: impl Stream<Item = Result<FlightData, FlightError>> + Send + 'static,
    principal: &Principal,
    note: &super::audit::AuditNote,
) -> Result<Vec<u8>, Status> {
    if command.temporary {
        return Err(Status::unimplemented("bulk ingest: Sheaf has no temporary tables"));
    }
    if command.transaction_id.is_some() {
        return Err(Status::unimplemented("bulk ingest: Sheaf has no transactions (each ingest is one revision)"));
    }
    let (package, path) = target(&command)?;
    note.target(&package, None, Some(&path));
    // Before anything is read of the package: to a caller who may not read
    // it, its tables must answer exactly as a missing package's.
    super::write::require_write(engine.registry(), principal, &package)?;
    let options = command.table_definition_options.unwrap_or_default();
    let mode = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Append) => proto::WriteMode::Append,
        Ok(TableExistsOption::Replace) => proto::WriteMode::Overwrite,
        _ => proto::WriteMode::ErrorIfExists,
    };
    if mode == proto::WriteMode::Append
        && crate::registry::is_file_table(&path)
        && table_exists(engine, &package, &path).await?
    {
        return Err(Status::failed_precondition(format!(
            "bulk ingest: {path} of {package} is a single Parquet file, which an append would replace; append to a \
             folder table (a name without .parquet: each ingest adds a part) or replace it (mode replace)"
        )));
    }
    let registry = engine.registry();
    let begin = proto::BeginWriteRequest {
        package: package.clone(),
        mode: mode as i32,
        message: Some(format!("bulk ingest into {path}")),
        tool: "flight-sql ingest".into(),
        ..Default::default()
    };
    let session = super::write::begin(registry, principal, note, begin).await?.session;
    if options.if_not_exist == TableNotExistOption::Fail as i32 && !table_exists(engine, &package, &path).await? {
        let _ = registry.abort_write(&session).await;
        return Err(Status::not_found(format!("bulk ingest: table {path} of {package} does not exist")));
    }
    let what = format!("{package}/{path}");
    let staged = async {
        let received = super::put::receive(flight, &what).await?;
        let meta = received.entry_meta();
        let (file, rows, columns) = (received.file, received.rows, received.columns);
        registry.stage_part(&session, &path, 0, file.path(), rows, columns, meta).await?;
        Ok::<_, Status>(rows)
    }
    .await;
    let rows = match staged {
        Ok(rows) => rows,
        Err(e) => {
            let _ = registry.abort_write(&session).await;
            return Err(e);
        }
    };
    let commit = proto::CommitWriteRequest { session: session.clone(), parts: Vec::new() };
    if let Err(e) = super::write::commit(registry, principal, note, commit).await {
        // A refused commit made nothing and released the session: its staged
        // data goes now (a commit that did land refuses the abort).
        let _ = registry.abort_write(&session).await;
        return Err(e);
    }
    Ok(DoPutUpdateResult { record_count: i64::try_from(rows).unwrap_or(i64::MAX) }.encode_to_vec())
}

/// Whether `path` (a file or folder) exists in the latest revision of `package`.
async fn table_exists(engine: &Engine, package: &str, path: &str) -> Result<bool, Status> {
    let package = package.parse()?;
    let r = PackageRef { package, revision: Revision::Latest, subpath: None };
    match engine.registry().load(&r).await {
        Ok((_, manifest)) => Ok(!crate::registry::table_entries(&manifest, path).is_empty()),
        Err(crate::registry::Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingest_into(schema: Option<&str>, table: &str) -> Result<(String, String), Status> {
        target(&CommandStatementIngest { schema: schema.map(str::to_owned), table: table.into(), ..Default::default() })
    }

    #[test]
    fn the_manifest_table_name_is_refused() {
        for (schema, table) in
            [(Some("sql/stores"), "_manifest"), (Some("sql/stores"), "/_manifest/"), (None, "sql/stores/_manifest")]
        {
            let e = ingest_into(schema, table).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains("_manifest") && e.message().contains("reserved"), "{e}");
        }
        // Other names, and another case (a quoted "_MANIFEST" is a table of its own in SQL), are tables.
        assert_eq!(ingest_into(Some("sql/stores"), "_MANIFEST").unwrap().1, "_MANIFEST");
        assert_eq!(ingest_into(Some("sql/stores"), "_manifest/part").unwrap().1, "_manifest/part");
        assert_eq!(ingest_into(None, "sql/stores/t.parquet").unwrap(), ("sql/stores".into(), "t.parquet".into()));
    }

    #[test]
    fn tables_no_write_could_make_are_refused() {
        let long = "n".repeat(300);
        for (table, why) in [
            ("q.csv", "must be a .parquet file or a folder"),
            ("q.csv/", "must be a .parquet file or a folder"),
            (long.as_str(), "longer than 255 bytes"),
            ("a/../b", "cannot be a path in a package"),
            ("a//b", "cannot be a path in a package"),
        ] {
            let e = ingest_into(Some("sql/stores"), table).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(why), "{table}: {e}");
        }
        assert_eq!(ingest_into(Some("sql/stores"), "daily/2026").unwrap().1, "daily/2026");
    }
}
