//! One [`RelationDesc`] per [`IntrospectionType`].
//!
//! Frontiers are rendered as text (`"[]"` for the empty frontier, otherwise the
//! comma-separated times in brackets), so a reader of the collection needs nothing but a
//! normal snapshot to interpret them.

use strata_controller_api::{ColumnType, IntrospectionType, RelationDesc, ScalarType};

fn text(nullable: bool) -> ColumnType {
    ScalarType::String.nullable(nullable)
}

fn count() -> ColumnType {
    ScalarType::UInt64.nullable(false)
}

/// The schema of an introspection collection.
///
/// # Examples
///
/// ```
/// use strata_controller_api::IntrospectionType;
/// use strata_introspection::schema::desc;
/// let names: Vec<_> = desc(IntrospectionType::ShardMapping).names().map(str::to_owned).collect();
/// assert_eq!(names, ["object_id", "shard_id"]);
/// ```
pub fn desc(typ: IntrospectionType) -> RelationDesc {
    let builder = RelationDesc::builder();
    match typ {
        IntrospectionType::ShardMapping => builder
            .with_column("object_id", text(false))
            .with_column("shard_id", text(false)),
        IntrospectionType::Frontiers => builder
            .with_column("object_id", text(false))
            .with_column("read_frontier", text(true))
            .with_column("upper", text(true)),
        IntrospectionType::ReplicaFrontiers => builder
            .with_column("object_id", text(false))
            .with_column("replica_id", text(false))
            .with_column("upper", text(true)),
        IntrospectionType::SourceStatistics => builder
            .with_column("id", text(false))
            .with_column("replica_id", text(false))
            .with_column("messages_received", count())
            .with_column("bytes_received", count())
            .with_column("updates_staged", count())
            .with_column("updates_committed", count())
            .with_column("snapshot_committed", ScalarType::Bool.nullable(false))
            .with_column("offset_known", ScalarType::UInt64.nullable(true))
            .with_column("offset_committed", ScalarType::UInt64.nullable(true)),
        IntrospectionType::SinkStatistics => builder
            .with_column("id", text(false))
            .with_column("replica_id", text(false))
            .with_column("messages_staged", count())
            .with_column("messages_committed", count())
            .with_column("bytes_staged", count())
            .with_column("bytes_committed", count()),
        IntrospectionType::SourceStatusHistory | IntrospectionType::SinkStatusHistory => builder
            .with_column("occurred_at", ScalarType::TimestampMillis.nullable(false))
            .with_column("id", text(false))
            .with_column("status", text(false))
            .with_column("error", text(true))
            .with_column("details", ScalarType::Jsonb.nullable(true))
            .with_column("replica_id", text(true)),
        IntrospectionType::ReplicaMetricsHistory => builder
            .with_column("occurred_at", ScalarType::TimestampMillis.nullable(false))
            .with_column("replica_id", text(false))
            .with_column("process_id", count())
            .with_column("cpu_nano_cores", ScalarType::UInt64.nullable(true))
            .with_column("memory_bytes", ScalarType::UInt64.nullable(true))
            .with_column("disk_bytes", ScalarType::UInt64.nullable(true)),
        IntrospectionType::ComputeDependencies => builder
            .with_column("object_id", text(false))
            .with_column("dependency_id", text(false)),
        IntrospectionType::ComputeOperatorHydrationStatus => builder
            .with_column("object_id", text(false))
            .with_column("physical_plan_node_id", count())
            .with_column("replica_id", text(false))
            .with_column("hydrated", ScalarType::Bool.nullable(false)),
        IntrospectionType::ComputeMaterializedViewRefreshes => builder
            .with_column("materialized_view_id", text(false))
            .with_column("last_completed_refresh", ScalarType::UInt64.nullable(true))
            .with_column("next_refresh", ScalarType::UInt64.nullable(true)),
        IntrospectionType::ComputeErrorCounts => builder
            .with_column("export_id", text(false))
            .with_column("replica_id", text(false))
            .with_column("count", ScalarType::Int64.nullable(false)),
        IntrospectionType::ComputeHydrationTimes => builder
            .with_column("replica_id", text(false))
            .with_column("object_id", text(false))
            .with_column("time_ns", ScalarType::UInt64.nullable(true)),
        IntrospectionType::PreparedStatementHistory => builder
            .with_column("id", text(false))
            .with_column("session_id", text(false))
            .with_column("name", text(false))
            .with_column("sql_hash", ScalarType::Bytes.nullable(false))
            .with_column("prepared_at", ScalarType::TimestampMillis.nullable(false)),
        IntrospectionType::StatementExecutionHistory => builder
            .with_column("id", text(false))
            .with_column("prepared_statement_id", text(false))
            .with_column("sample_rate", ScalarType::Float64.nullable(false))
            .with_column("params", ScalarType::Jsonb.nullable(true))
            .with_column("began_at", ScalarType::TimestampMillis.nullable(false))
            .with_column("finished_at", ScalarType::TimestampMillis.nullable(true))
            .with_column("finished_status", text(true)),
        IntrospectionType::SessionHistory => builder
            .with_column("session_id", text(false))
            .with_column("connected_at", ScalarType::TimestampMillis.nullable(false))
            .with_column("application_name", text(false))
            .with_column("authenticated_user", text(false)),
        IntrospectionType::StatementLifecycleHistory => builder
            .with_column("statement_id", text(false))
            .with_column("event_type", text(false))
            .with_column("occurred_at", ScalarType::TimestampMillis.nullable(false)),
        IntrospectionType::SqlText => builder
            .with_column("sql_hash", ScalarType::Bytes.nullable(false))
            .with_column("sql", text(false)),
        IntrospectionType::PrivatelinkConnectionStatusHistory => builder
            .with_column("occurred_at", ScalarType::TimestampMillis.nullable(false))
            .with_column("connection_id", text(false))
            .with_column("status", text(false)),
    }
    .finish()
}

/// Renders a frontier as introspection text: `[]` when empty, else `[t1, t2]`.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Antichain, Timestamp};
/// use strata_introspection::schema::frontier_text;
/// assert_eq!(frontier_text(&Antichain::<Timestamp>::new()), "[]");
/// assert_eq!(frontier_text(&Antichain::from_elem(Timestamp::new(5))), "[5]");
/// ```
pub fn frontier_text<T: std::fmt::Display>(
    frontier: &strata_controller_api::Antichain<T>,
) -> String {
    let times: Vec<String> = frontier
        .elements()
        .iter()
        .map(ToString::to_string)
        .collect();
    format!("[{}]", times.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_schema_with_unique_column_names() {
        for typ in IntrospectionType::ALL {
            let d = desc(typ);
            assert!(d.arity() >= 2, "{typ:?}");
            let mut names: Vec<_> = d.names().collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), d.arity(), "{typ:?} repeats a column name");
        }
    }

    #[test]
    fn statistics_carry_the_replica() {
        for typ in [
            IntrospectionType::SourceStatistics,
            IntrospectionType::SinkStatistics,
        ] {
            assert!(desc(typ).names().any(|n| n == "replica_id"), "{typ:?}");
        }
    }
}
