//! Reading the Postgres source's tables in a snapshot a replication slot exported:
//! the initial snapshot of every table, and the backfill of tables added later.

use bytes::Bytes;
use pgwire_replication::Lsn;

use super::pgoutput::TupleValue;
use super::{Table, quote, upstream};
use strata_controller_api::Row;

use crate::connector::{ConnectorError, Offset, SourceUpdate};

/// The consistent point and the exported snapshot's name that `CREATE_REPLICATION_SLOT`
/// answered with.
pub(super) fn slot_created<R>(rows: &[R]) -> Result<(Offset, String), ConnectorError>
where
    R: std::ops::Deref<Target = [Option<Bytes>]>,
{
    let field = |i: usize| -> Result<String, ConnectorError> {
        rows.first()
            .and_then(|row| row.get(i).cloned().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or_else(|| upstream("CREATE_REPLICATION_SLOT returned no slot"))
    };
    let consistent = Lsn::parse(&field(1)?).map_err(upstream)?.as_u64();
    Ok((consistent, field(2)?))
}

/// Every row of `tables` in the exported snapshot `snapshot`, as inserts at `offset`.
pub(super) async fn read_in_snapshot<'a>(
    sql: &tokio_postgres::Client,
    snapshot: &str,
    tables: impl Iterator<Item = &'a Table>,
    offset: Offset,
) -> Result<Vec<SourceUpdate>, ConnectorError> {
    sql.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(upstream)?;
    sql.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{snapshot}'"))
        .await
        .map_err(upstream)?;
    let updates = read_tables(sql, tables, offset).await?;
    sql.batch_execute("COMMIT").await.map_err(upstream)?;
    Ok(updates)
}

/// Every row of `tables`, read in the session's transaction, as inserts at `offset`.
async fn read_tables<'a>(
    sql: &tokio_postgres::Client,
    tables: impl Iterator<Item = &'a Table>,
    offset: Offset,
) -> Result<Vec<SourceUpdate>, ConnectorError> {
    let mut updates = Vec::new();
    for table in tables {
        updates.extend(
            select_all(sql, table)
                .await?
                .into_iter()
                .map(|row| SourceUpdate {
                    offset,
                    output: table.output(),
                    row,
                    diff: 1,
                }),
        );
    }
    Ok(updates)
}

/// Every row of `table` (one copy per row, as `SELECT *` counts them), mapped as the
/// source maps values, in the session's current transaction. Tests compare a
/// subsource with it.
pub async fn select_all(
    sql: &tokio_postgres::Client,
    table: &Table,
) -> Result<Vec<Row>, ConnectorError> {
    let columns: Vec<String> = table.columns.iter().map(|(c, _, _)| quote(c)).collect();
    let query = format!("SELECT {} FROM {}", columns.join(", "), table.quoted());
    let mut rows = Vec::new();
    for message in sql.simple_query(&query).await.map_err(upstream)? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            let values: Vec<TupleValue> = (0..table.columns.len())
                .map(|i| match row.get(i) {
                    Some(text) => TupleValue::Text(text.to_owned()),
                    None => TupleValue::Null,
                })
                .collect();
            rows.push(table.row(&values).map_err(upstream)?);
        }
    }
    Ok(rows)
}
