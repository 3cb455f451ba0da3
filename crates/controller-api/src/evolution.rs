//! Schema evolution of a relation: which new versions of a [`RelationDesc`] a shard
//! can take in place.
//!
//! A new version may only add nullable columns at the end (what `ALTER TABLE … ADD
//! COLUMN` needs). Then every older part reads under the new version with NULL in the
//! added columns, and every newer part reads under an older version by leaving them
//! out, so readers and writers of either version keep working.

use crate::row::RelationDesc;

/// Why a new version of a relation cannot replace the old one in place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IncompatibleSchema {
    /// A column of the old version is missing from the new one.
    #[error("column {name:?} would be dropped")]
    ColumnDropped {
        /// The column.
        name: String,
    },
    /// A column of the old version has another name, type or nullability.
    #[error("column {index} would change from {old} to {new}")]
    ColumnChanged {
        /// Its position.
        index: usize,
        /// The old column, as `name type [null]`.
        old: String,
        /// The new one.
        new: String,
    },
    /// An added column does not admit NULL, which the rows written before lack.
    #[error("added column {name:?} must be nullable")]
    AddedNotNullable {
        /// The column.
        name: String,
    },
}

fn render(name: &str, typ: &crate::row::ColumnType) -> String {
    let null = if typ.nullable { " null" } else { "" };
    format!("{name} {:?}{null}", typ.scalar_type)
}

/// Checks that `new` is `old` with nullable columns added at the end (or `old` itself).
///
/// # Examples
///
/// ```
/// use strata_controller_api::{RelationDesc, ScalarType, check_evolution};
/// let v1 = RelationDesc::builder().with_column("x", ScalarType::Int64.nullable(false)).finish();
/// let v2 = RelationDesc::builder()
///     .with_column("x", ScalarType::Int64.nullable(false))
///     .with_column("note", ScalarType::String.nullable(true))
///     .finish();
/// assert!(check_evolution(&v1, &v2).is_ok());
/// assert!(check_evolution(&v2, &v1).is_err());
/// ```
pub fn check_evolution(old: &RelationDesc, new: &RelationDesc) -> Result<(), IncompatibleSchema> {
    let mut new_columns = new.columns();
    for (index, (name, typ)) in old.columns().enumerate() {
        match new_columns.next() {
            None => {
                return Err(IncompatibleSchema::ColumnDropped {
                    name: name.to_owned(),
                });
            }
            Some((new_name, new_typ)) if new_name == name && new_typ == typ => {}
            Some((new_name, new_typ)) => {
                return Err(IncompatibleSchema::ColumnChanged {
                    index,
                    old: render(name, typ),
                    new: render(new_name, new_typ),
                });
            }
        }
    }
    match new_columns.find(|(_, typ)| !typ.nullable) {
        Some((name, _)) => Err(IncompatibleSchema::AddedNotNullable {
            name: name.to_owned(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::row::ScalarType;

    fn desc(columns: &[(&str, ScalarType, bool)]) -> RelationDesc {
        columns
            .iter()
            .fold(RelationDesc::builder(), |b, (name, typ, null)| {
                b.with_column(*name, typ.nullable(*null))
            })
            .finish()
    }

    #[test]
    fn only_nullable_columns_at_the_end_may_be_added() {
        use ScalarType::{Int64, String as Text};
        let v1 = desc(&[("x", Int64, false), ("s", Text, true)]);
        let cases: Vec<(RelationDesc, Result<(), &str>)> = vec![
            (v1.clone(), Ok(())),
            (
                desc(&[("x", Int64, false), ("s", Text, true), ("n", Int64, true)]),
                Ok(()),
            ),
            (
                desc(&[("x", Int64, false), ("s", Text, true), ("n", Int64, false)]),
                Err("added column \"n\" must be nullable"),
            ),
            (
                desc(&[("x", Int64, false)]),
                Err("column \"s\" would be dropped"),
            ),
            (
                desc(&[("x", Int64, true), ("s", Text, true)]),
                Err("column 0 would change from x Int64 to x Int64 null"),
            ),
            (
                desc(&[("y", Int64, false), ("s", Text, true)]),
                Err("column 0 would change from x Int64 to y Int64"),
            ),
            (
                desc(&[("n", Int64, true), ("x", Int64, false), ("s", Text, true)]),
                Err("column 0 would change from x Int64 to n Int64 null"),
            ),
        ];
        for (new, expected) in cases {
            let got = check_evolution(&v1, &new).map_err(|e| e.to_string());
            assert_eq!(got, expected.map_err(str::to_owned), "{new:?}");
        }
    }
}
