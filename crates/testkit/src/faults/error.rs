//! [`InjectedFault`]: the source of every error a faulty store makes up.

use object_store::path::Path;
use strata_controller_api::Certainty;

/// The name a [`FaultyObjectStore`](super::FaultyObjectStore) puts in
/// `object_store::Error::Generic { store, .. }`.
pub const FAULTY_STORE_NAME: &str = "faulty";

/// A failure that fault injection made up. It is the `source` of an
/// `object_store::Error::Generic { store: "faulty", .. }`, and says whether the
/// operation reached the inner store.
///
/// # Examples
///
/// ```
/// use strata_controller_api::Certainty;
/// use strata_testkit::faults::InjectedFault;
/// let fault = InjectedFault::Indeterminate { op: "put", location: "a/b".into() };
/// assert_eq!(fault.certainty(), Certainty::Indeterminate);
/// let err: object_store::Error = fault.clone().into();
/// assert_eq!(InjectedFault::of(&err), Some(&fault));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InjectedFault {
    /// Injected before the call reached the inner store: nothing happened.
    #[error("injected determinate fault before {op} of {location:?}: nothing was applied")]
    Determinate {
        /// The operation, such as `put` or `list`.
        op: &'static str,
        /// The location (or prefix) of the call; empty for the root.
        location: String,
    },
    /// Injected after the inner store applied a mutation: it happened, but the caller
    /// was told it failed.
    #[error("injected indeterminate fault after {op} of {location:?}: the change was applied")]
    Indeterminate {
        /// The operation, such as `put` or `delete`.
        op: &'static str,
        /// The location of the call.
        location: String,
    },
    /// The store was unavailable, so the call never reached it: nothing happened.
    #[error("store unavailable for {op} of {location:?}: nothing was applied")]
    Unavailable {
        /// The operation, such as `get`.
        op: &'static str,
        /// The location (or prefix) of the call; empty for the root.
        location: String,
    },
}

impl InjectedFault {
    /// Whether the operation may have taken effect.
    pub fn certainty(&self) -> Certainty {
        match self {
            InjectedFault::Determinate { .. } | InjectedFault::Unavailable { .. } => {
                Certainty::Determinate
            }
            InjectedFault::Indeterminate { .. } => Certainty::Indeterminate,
        }
    }

    /// Whether the operation certainly did not happen.
    pub fn is_determinate(&self) -> bool {
        self.certainty() == Certainty::Determinate
    }

    /// The injected fault behind an object-store error, or `None` if `err` did not come
    /// from fault injection.
    pub fn of(err: &object_store::Error) -> Option<&InjectedFault> {
        match err {
            object_store::Error::Generic { store, source } if *store == FAULTY_STORE_NAME => {
                source.downcast_ref::<InjectedFault>()
            }
            _ => None,
        }
    }

    pub(crate) fn location_text(location: Option<&Path>) -> String {
        location.map(|p| p.as_ref().to_owned()).unwrap_or_default()
    }
}

impl From<InjectedFault> for object_store::Error {
    fn from(fault: InjectedFault) -> Self {
        object_store::Error::Generic {
            store: FAULTY_STORE_NAME,
            source: Box::new(fault),
        }
    }
}
