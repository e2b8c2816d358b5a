//! Broken variants caught: a model run with a variant switched on must fail with the one
//! invariant's message, its expected panics kept quiet.

use super::*;

std::thread_local! {
    /// Set while this OS thread runs a model that is expected to fail.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` without printing the panics it is expected to raise (loom runs every modelled
/// thread on the calling OS thread, so a thread-local flag covers them all); panics
/// elsewhere still print.
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                default(info);
            }
        }));
    });
    struct Loud;
    impl Drop for Loud {
        fn drop(&mut self) {
            QUIET.with(|quiet| quiet.set(false));
        }
    }
    QUIET.with(|quiet| quiet.set(true));
    let _loud = Loud;
    f()
}

/// The text of a caught panic.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// A deliberately broken variant caught by one invariant.
#[derive(Debug)]
pub struct Caught {
    /// The failing execution (1-based: how many executions loom explored to find it).
    pub at_execution: usize,
    /// The clean model's statistics (same scenario, protocol intact, same bound).
    pub clean: Stats,
    /// The violation's message.
    pub message: String,
}

/// Runs `scenario` checking only `invariant`: first with the protocol intact (it must pass
/// and explore more than one execution), then with `variant` switched on (it must fail with
/// `invariant`'s message). `Err` says what happened otherwise.
pub fn catches(
    scenario: &Scenario,
    variant: Variant,
    invariant: Invariant,
) -> Result<Caught, String> {
    let (clean, outcome) = scenario.clone().only(invariant).explore();
    if let Err(payload) = outcome {
        return Err(format!(
            "the clean model fails: {}",
            panic_message(payload.as_ref())
        ));
    }
    if clean.executions <= 1 {
        return Err(format!("the clean model explored only {clean}"));
    }
    let (stats, outcome) = quietly(|| scenario.clone().only(invariant).variant(variant).explore());
    match outcome {
        Ok(()) => Err(format!(
            "{variant:?} was not caught by {} ({stats})",
            invariant.label()
        )),
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            if !message.contains(invariant.label()) {
                return Err(format!("{variant:?} failed otherwise: {message}"));
            }
            Ok(Caught {
                at_execution: stats.executions,
                clean,
                message,
            })
        }
    }
}
