//! Names in SQL: the `sheaf` catalog, whose schemas are package revisions
//! resolved lazily as a statement is planned, and the `sheaf('uri')` table
//! function. One [`Resolver`] serves one statement: it resolves each schema
//! name once (so `"owner/name"` means one revision throughout the
//! statement), checks that the caller may read the package, and records
//! what it resolved as [`Pins`]. Given pins (a ticket being redeemed), it
//! resolves nothing: every name must be pinned.

use super::tables::{PlannedTable, parquet_table};
use super::{MANIFEST_TABLE, Pins};
use crate::query::table::Format;
use crate::query::{DatasetUri, Engine, Error};
use crate::registry::PackageName;
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Whether the caller may read a package (`owner/name`).
pub type MayRead = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A query-layer error carried through DataFusion (see
/// [`super::engine::from_datafusion`], which takes it out again).
pub(super) fn external(e: Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Resolves the names of one statement.
pub(super) struct Resolver {
    engine: Arc<Engine>,
    may_read: MayRead,
    /// Set when redeeming a ticket: the only names that resolve.
    pinned: Option<Pins>,
    /// What was resolved so far.
    resolved: Mutex<Pins>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("pinned", &self.pinned).finish_non_exhaustive()
    }
}

impl Resolver {
    pub(super) fn new(engine: Arc<Engine>, may_read: MayRead, pinned: Option<Pins>) -> Self {
        Resolver { engine, may_read, pinned, resolved: Mutex::default() }
    }

    /// What the statement read, by the names it used.
    pub(super) fn pins(&self) -> Pins {
        self.resolved.lock().expect("resolver poisoned").clone()
    }

    /// Fails like a missing package unless the caller may read `package`.
    fn check(&self, package: &PackageName) -> Result<(), Error> {
        match (self.may_read)(&package.to_string()) {
            true => Ok(()),
            false => Err(self.engine.registry().package_not_found(package).into()),
        }
    }

    /// The package and top hash a schema name stands for.
    async fn revision(&self, schema: &str) -> Result<(PackageName, String), Error> {
        let named = parse_schema(schema)?;
        self.check(&named.package)?;
        if let Some(done) = self.resolved.lock().expect("resolver poisoned").schemas.get(schema) {
            return Ok((named.package, top_hash_of(done)));
        }
        let top_hash = match &self.pinned {
            // A ticket comes back from the client: its pin must name the
            // schema's own package and one of its revisions.
            Some(pins) => match pins.schemas.get(schema).and_then(|p| p.rsplit_once('@')) {
                Some((package, hash))
                    if package == named.package.to_string()
                        && hash.len() == 64
                        && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    self.engine.registry().check_own_revision(&named.package, hash).await?;
                    hash.to_owned()
                }
                Some(_) => {
                    return Err(Error::invalid(format!(
                        "bad ticket: schema {schema} is not pinned to a top hash of its package"
                    )));
                }
                None => return Err(Error::invalid(format!("the ticket does not pin schema {schema}"))),
            },
            None => self.engine.registry().resolve(&named.package, &named.revision).await?,
        };
        let mut resolved = self.resolved.lock().expect("resolver poisoned");
        // Two lookups of one name racing: the first answer stands.
        let pin = resolved.schemas.entry(schema.to_owned()).or_insert_with(|| format!("{}@{top_hash}", named.package));
        Ok((named.package, top_hash_of(pin)))
    }

    /// The table `name` of the schema `schema`.
    async fn table(&self, schema: &str, name: &str) -> Result<Arc<dyn TableProvider>, Error> {
        let (package, top_hash) = self.revision(schema).await?;
        let path = if name == MANIFEST_TABLE { "" } else { name };
        let label = format!("{package}@{}", &top_hash[..12]);
        let found = self.engine.table(&top_hash, path, &label).await?;
        Ok(match found.format {
            Format::Parquet => Arc::new(parquet_table(&self.engine, &found, &label).await?),
            _ => {
                let uri = DatasetUri::table(&package, &top_hash, path);
                Arc::new(PlannedTable::open(self.engine.clone(), &uri).await?)
            }
        })
    }

    /// Plans the table function's URIs (the function itself is called
    /// while planning, which cannot wait for storage).
    pub(super) async fn function_tables(&self, uris: Vec<String>) -> Result<SheafFunction, Error> {
        let mut tables = HashMap::new();
        for written in uris {
            if tables.contains_key(&written) {
                continue;
            }
            let pinned_text = match &self.pinned {
                Some(pins) => Some(pins.uris.get(&written).cloned().ok_or_else(|| {
                    Error::invalid(format!("the ticket does not pin {}", crate::query::limits::excerpt(&written)))
                })?),
                None => None,
            };
            let uri = DatasetUri::parse(pinned_text.as_deref().unwrap_or(&written))?;
            self.check(&uri.package)?;
            let table = PlannedTable::open(self.engine.clone(), &uri).await?;
            self.resolved.lock().expect("resolver poisoned").uris.insert(written.clone(), table.pinned_uri());
            tables.insert(written, Arc::new(table));
        }
        Ok(SheafFunction { tables })
    }
}

/// `owner/name@<64 hex>` -> the hash.
fn top_hash_of(pin: &str) -> String {
    pin.rsplit_once('@').map(|(_, h)| h.to_owned()).unwrap_or_default()
}

/// A schema name parsed: `owner/name`, `owner/name@<hash prefix>`,
/// `owner/name:<tag>`.
pub(super) fn parse_schema(schema: &str) -> Result<DatasetUri, Error> {
    let unqualified = || {
        Error::invalid(format!(
            "schema {} is not a package: tables are named \"owner/name\".\"path\" \
             (or \"owner/name@hash\" / \"owner/name:tag\" for a revision)",
            crate::query::limits::excerpt(schema)
        ))
    };
    if schema.matches('/').count() != 1 || schema.contains('?') || schema.contains('#') {
        return Err(unqualified());
    }
    let uri = DatasetUri::parse(&format!("sheaf://{schema}")).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("schema {}: {m}", crate::query::limits::excerpt(schema))),
        other => other,
    })?;
    if !uri.path.is_empty() {
        return Err(unqualified());
    }
    Ok(uri)
}

/// The `sheaf` catalog of one statement.
#[derive(Debug)]
pub(super) struct SheafCatalog(pub(super) Arc<Resolver>);

impl CatalogProvider for SheafCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.0.pins().schemas.into_keys().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        Some(Arc::new(PackageSchema { resolver: self.0.clone(), name: name.to_owned() }))
    }
}

/// A package revision as a schema; its tables are found when asked for.
#[derive(Debug)]
struct PackageSchema {
    resolver: Arc<Resolver>,
    name: String,
}

#[async_trait]
impl SchemaProvider for PackageSchema {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        // The default schema holds no table: a bare name that is not the
        // table function is a mistake worth explaining.
        if self.name == super::engine::DEFAULT_SCHEMA {
            return match name == super::TABLE_FUNCTION {
                true => Ok(None),
                false => Err(external(Error::invalid(format!(
                    "table {} has no package: name tables as \"owner/name\".\"path\", \
                     e.g. SELECT * FROM \"demo/weather\".\"tables/readings.parquet\"",
                    crate::query::limits::excerpt(name)
                )))),
            };
        }
        self.resolver.table(&self.name, name).await.map(Some).map_err(external)
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}

/// `sheaf('sheaf://owner/name[@rev]/path?params')`: the rows a read of that
/// dataset URI returns.
#[derive(Debug)]
pub(super) struct SheafFunction {
    tables: HashMap<String, Arc<PlannedTable>>,
}

impl TableFunctionImpl for SheafFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> datafusion::error::Result<Arc<dyn TableProvider>> {
        let uri = match args.exprs() {
            [
                Expr::Literal(
                    ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)),
                    _,
                ),
            ] => s,
            _ => {
                return Err(external(Error::invalid(
                    "sheaf() takes one argument, a dataset URI as a string literal: \
                     sheaf('sheaf://owner/name/path?sample=0.1')",
                )));
            }
        };
        match self.tables.get(uri) {
            Some(t) => Ok(t.clone()),
            None => Err(DataFusionError::Internal(format!("sheaf({uri:?}) was not planned"))),
        }
    }
}

/// The dataset URIs the statement passes to `sheaf()` (as a table, or
/// `LATERAL sheaf(...)`, also under EXPLAIN), each a single-quoted literal;
/// anything else given to it is refused here, naming the right form.
pub(super) fn function_uris(statement: &datafusion::sql::parser::Statement) -> Result<Vec<String>, Error> {
    use datafusion::sql::parser::Statement as DfStatement;
    use datafusion::sql::sqlparser::ast::{
        Expr as SqlExpr, FunctionArg, FunctionArgExpr, TableFactor, Value, Visit, Visitor,
    };
    use std::ops::ControlFlow;
    struct Collect(Vec<String>, Option<Error>);
    impl Collect {
        fn take(&mut self, args: &[FunctionArg]) -> ControlFlow<()> {
            let refused = match args {
                [FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::Value(v)))] => match &v.value {
                    Value::SingleQuotedString(s) => {
                        self.0.push(s.clone());
                        return ControlFlow::Continue(());
                    }
                    _ => "sheaf() takes a dataset URI as a single-quoted string: sheaf('sheaf://owner/name/path')",
                },
                _ => "sheaf() takes one argument, a dataset URI as a string literal: sheaf('sheaf://owner/name/path')",
            };
            self.1 = Some(Error::invalid(refused));
            ControlFlow::Break(())
        }
    }
    impl Visitor for Collect {
        type Break = ();
        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
            let ours = |name: &datafusion::sql::sqlparser::ast::ObjectName| {
                name.0.len() == 1
                    && name.0[0].as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case(super::TABLE_FUNCTION))
            };
            match factor {
                TableFactor::Table { name, args: Some(args), .. } if ours(name) => self.take(&args.args),
                TableFactor::Function { name, args, .. } if ours(name) => self.take(args),
                _ => ControlFlow::Continue(()),
            }
        }
    }
    let mut collect = Collect(Vec::new(), None);
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut collect);
        }
        DfStatement::Explain(explain) => return function_uris(&explain.statement),
        _ => {}
    }
    match collect.1 {
        Some(e) => Err(e),
        None => Ok(collect.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Revision;

    #[test]
    fn schemas_are_package_revisions() {
        let latest = parse_schema("demo/weather").unwrap();
        assert_eq!((latest.package.to_string(), latest.revision), ("demo/weather".into(), Revision::Latest));
        let hash = parse_schema("demo/weather@abcdef12").unwrap();
        assert_eq!(hash.revision, Revision::Hash("abcdef12".into()));
        let tag = parse_schema("demo/weather:v1").unwrap();
        assert_eq!(tag.revision, Revision::Tag("v1".into()));
        for bad in ["public", "demo", "demo/weather/tables", "demo/weather?x=1", ""] {
            let e = parse_schema(bad).unwrap_err().to_string();
            assert!(e.contains("owner/name"), "{bad}: {e}");
        }
        let e = parse_schema("demo/weather:bad tag").unwrap_err().to_string();
        assert!(e.contains("demo/weather:bad tag"), "{e}");
    }
}
