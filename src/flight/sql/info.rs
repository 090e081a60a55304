//! What Flight SQL clients ask about the server before their first query:
//! `GetSqlInfo` (every key the JDBC driver, DBeaver, Metabase and Superset
//! read; a missing key crashes some of them) and `GetXdbcTypeInfo`.

use arrow_flight::sql::metadata::XdbcTypeInfoDataBuilder;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel, SqlSupportedCaseSensitivity,
    SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType,
};
use std::sync::LazyLock;
use std::time::Duration;

/// Keywords beyond SQL-92 the dialect reserves (JDBC `getSQLKeywords`).
const KEYWORDS: &[&str] = &["EXPLAIN", "FILTER", "ILIKE", "LIMIT", "OFFSET", "QUALIFY", "STRUCT", "UNNEST"];
const NUMERIC: &[&str] = &[
    "ABS", "ACOS", "ASIN", "ATAN", "ATAN2", "CBRT", "CEIL", "COS", "DEGREES", "EXP", "FLOOR", "LN", "LOG", "LOG10",
    "LOG2", "PI", "POWER", "RADIANS", "RANDOM", "ROUND", "SIGNUM", "SIN", "SQRT", "TAN", "TRUNC",
];
const STRING: &[&str] = &[
    "ASCII",
    "BTRIM",
    "CHARACTER_LENGTH",
    "CHR",
    "CONCAT",
    "CONCAT_WS",
    "INITCAP",
    "LEFT",
    "LENGTH",
    "LOWER",
    "LPAD",
    "LTRIM",
    "OCTET_LENGTH",
    "REGEXP_REPLACE",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "RPAD",
    "RTRIM",
    "SPLIT_PART",
    "STARTS_WITH",
    "STRPOS",
    "SUBSTR",
    "TRANSLATE",
    "TRIM",
    "UPPER",
];
const DATETIME: &[&str] =
    &["CURRENT_DATE", "CURRENT_TIME", "DATE_BIN", "DATE_PART", "DATE_TRUNC", "EXTRACT", "NOW", "TO_TIMESTAMP"];
const SYSTEM: &[&str] = &["ARROW_TYPEOF", "COALESCE", "NULLIF"];

/// `FLIGHT_SQL_SERVER_STATEMENT_TIMEOUT`: the time one query may run
/// (`sheaf serve --sql-timeout`), in milliseconds as the key defines it (an
/// int32, so at most about 24 days); 0 would say "no timeout".
fn statement_timeout_millis(timeout: Duration) -> i32 {
    match timeout.as_millis() {
        0 => 1, // ends at once: not "no timeout"
        millis => i32::try_from(millis).unwrap_or(i32::MAX),
    }
}

/// The answers to `GetSqlInfo` of a server whose queries may run for
/// `statement_timeout`.
pub fn sql_info(statement_timeout: Duration) -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Sheaf");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow columnar format version (1.5: views), as the key asks.
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, true);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, statement_timeout_millis(statement_timeout));
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(SqlInfo::SqlIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    // Quoted identifiers keep their case ("a" and "A" are two columns):
    // the enumeration has no value for that, so unknown, not insensitive.
    b.append(SqlInfo::SqlQuotedIdentifierCase, SqlSupportedCaseSensitivity::SqlCaseSensitivityUnknown as i32);
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(SqlInfo::SqlNullOrdering, SqlNullOrdering::SqlNullsSortedHigh as i32);
    b.append(SqlInfo::SqlKeywords, KEYWORDS);
    b.append(SqlInfo::SqlNumericFunctions, NUMERIC);
    b.append(SqlInfo::SqlStringFunctions, STRING);
    b.append(SqlInfo::SqlSystemFunctions, SYSTEM);
    b.append(SqlInfo::SqlDatetimeFunctions, DATETIME);
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    // Bit masks of the supported enum values.
    b.append(SqlInfo::SqlSupportedGroupBy, 0b11i32);
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        (1 << SupportedSqlGrammar::SqlMinimumGrammar as i32) | (1 << SupportedSqlGrammar::SqlCoreGrammar as i32),
    );
    // ANSI92 entry and intermediate levels.
    b.append(SqlInfo::SqlAnsi92SupportedLevel, 0b11i32);
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(SqlInfo::SqlOuterJoinsSupportLevel, SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32);
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "catalog");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(SqlInfo::SqlSupportedSubqueries, 0b1111i32);
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(SqlInfo::SqlSupportedUnions, 0b11i32);
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        // Zero: no limit, or not known.
        b.append(limit, 0i64);
    }
    b.append(SqlInfo::SqlMaxColumnNameLength, 0i64);
    b.append(SqlInfo::SqlDbSchemaNameLength, 255 * 2 + 1 + 64i64);
    b.append(SqlInfo::SqlMaxCatalogNameLength, 5i64);
    b.append(SqlInfo::SqlMaxTableNameLength, 0i64);
    b.append(SqlInfo::SqlMaxStatementLength, 1i64 << 20);
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, true);
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    // Forward-only result sets (bit of SQL_RESULT_SET_TYPE_FORWARD_ONLY).
    b.append(SqlInfo::SqlSupportedResultSetTypes, 1i32 << 1);
    b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified, 0i32);
    b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly, 1i32 << 1);
    b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive, 0i32);
    b.append(SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive, 0i32);
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build().expect("valid SQL info")
}

/// One row of `GetXdbcTypeInfo`.
fn type_info(name: &str, data_type: XdbcDataType, size: Option<i32>, quoted: bool, radix: Option<i32>) -> XdbcTypeInfo {
    let text = matches!(data_type, XdbcDataType::XdbcVarchar);
    XdbcTypeInfo {
        type_name: name.into(),
        data_type,
        column_size: size,
        literal_prefix: quoted.then(|| "'".into()),
        literal_suffix: quoted.then(|| "'".into()),
        create_params: None,
        nullable: Nullable::NullabilityNullable,
        case_sensitive: text,
        searchable: if text { Searchable::Full } else { Searchable::Basic },
        unsigned_attribute: radix.map(|_| false),
        fixed_prec_scale: false,
        auto_increment: radix.map(|_| false),
        local_type_name: Some(name.into()),
        minimum_scale: None,
        maximum_scale: None,
        sql_data_type: data_type,
        datetime_subcode: None,
        num_prec_radix: radix,
        interval_precision: None,
    }
}

/// The answers to `GetXdbcTypeInfo`: the SQL types of Arrow's common types.
pub static XDBC_INFO: LazyLock<XdbcTypeInfoData> = LazyLock::new(|| {
    use XdbcDataType as T;
    let mut b = XdbcTypeInfoDataBuilder::new();
    for info in [
        type_info("BOOLEAN", T::XdbcBit, Some(1), false, None),
        type_info("TINYINT", T::XdbcTinyint, Some(3), false, Some(10)),
        type_info("SMALLINT", T::XdbcSmallint, Some(5), false, Some(10)),
        type_info("INTEGER", T::XdbcInteger, Some(10), false, Some(10)),
        type_info("BIGINT", T::XdbcBigint, Some(19), false, Some(10)),
        type_info("REAL", T::XdbcReal, Some(24), false, Some(2)),
        type_info("DOUBLE", T::XdbcDouble, Some(53), false, Some(2)),
        type_info("DECIMAL", T::XdbcDecimal, Some(38), false, Some(10)),
        type_info("VARCHAR", T::XdbcVarchar, None, true, None),
        type_info("BYTEA", T::XdbcVarbinary, None, true, None),
        type_info("DATE", T::XdbcDate, Some(10), true, None),
        type_info("TIME", T::XdbcTime, Some(15), true, None),
        type_info("TIMESTAMP", T::XdbcTimestamp, Some(29), true, None),
    ] {
        b.append(info);
    }
    b.build().expect("valid type info")
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_timeout_is_the_query_time_limit_in_milliseconds() {
        assert_eq!(statement_timeout_millis(Duration::from_secs(300)), 300_000);
        assert_eq!(statement_timeout_millis(Duration::from_millis(1500)), 1500);
        assert_eq!(statement_timeout_millis(Duration::from_secs(100 * 86_400)), i32::MAX);
        assert_eq!(statement_timeout_millis(Duration::ZERO), 1);
        sql_info(Duration::from_secs(2));
    }
}
