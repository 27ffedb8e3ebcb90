//! What a manifest claims about one component, found by evaluating its sequences.
//!
//! SUIT states facts as commands: `override-parameters` sets the vendor id, class id,
//! image digest and size of the selected components (§8.4.10.3), `set-component-index`
//! selects (§8.4.10.1), `try-each` picks the first alternative whose conditions hold
//! (§8.4.10.2). The bootloader and the tools need the facts, so this module runs those
//! commands over parameter state only; conditions other than `component-slot` (which
//! picks between A/B alternatives) are checks on the device and never fail here.

use crate::command::{Command, CommandSequence, Condition, Parameter, Parameters};
use crate::digest::SuitDigest;
use crate::error::{Error, Result, msg};

/// The parameters a manifest sets for one component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ComponentClaims<'a> {
    pub vendor_id: Option<&'a [u8]>,
    pub class_id: Option<&'a [u8]>,
    pub image_digest: Option<SuitDigest<'a>>,
    pub image_size: Option<u64>,
    pub uri: Option<&'a str>,
    pub component_slot: Option<u64>,
    /// rota's anti-rollback level; `None` for manifests from other tools.
    pub security_version: Option<u64>,
}

/// Evaluation state: which components are selected, and what is known of the one asked for.
struct State<'a> {
    component: usize,
    components: usize,
    selected: u32,
    /// The slot the caller wants; `None` takes the first alternative of a `try-each`.
    slot: Option<u64>,
    claims: ComponentClaims<'a>,
}

/// Evaluates `sequences` in order for component `component`, as a processor would on a
/// device whose A/B slot is `slot`. Each sequence starts with component 0 selected.
pub fn evaluate<'a>(
    sequences: impl IntoIterator<Item = CommandSequence<'a>>,
    components: usize,
    component: usize,
    slot: Option<u64>,
) -> Result<ComponentClaims<'a>> {
    // Only a listed component has claims (a manifest may list none at all).
    if component >= components {
        return Err(Error::ComponentIndexOutOfRange {
            offset: 0,
            index: component as u64,
        });
    }
    let mut state = State {
        component,
        components,
        selected: 1,
        slot,
        claims: ComponentClaims::default(),
    };
    for seq in sequences {
        state.selected = 1;
        state.run(&seq, 0)?;
    }
    Ok(state.claims)
}

impl<'a> State<'a> {
    fn this_selected(&self) -> bool {
        self.component < 32 && self.selected & (1 << self.component) != 0
    }

    /// Runs `seq`; returns `false` when a condition failed (which ends a try-each branch).
    fn run(&mut self, seq: &CommandSequence<'a>, depth: usize) -> Result<bool> {
        if depth > crate::command::MAX_SEQUENCE_DEPTH {
            return Err(Error::LimitExceeded {
                offset: 0,
                limit: msg!("nested command sequences"),
            });
        }
        for command in seq.iter() {
            match command? {
                Command::SetComponentIndex(arg) => {
                    self.selected = arg.mask(self.components, 0)?;
                }
                Command::OverrideParameters(params) if self.this_selected() => {
                    self.override_parameters(params)?;
                }
                Command::Condition(Condition::ComponentSlot, _) if self.this_selected() => {
                    if let (Some(want), Some(have)) = (self.slot, self.claims.component_slot) {
                        if want != have {
                            return Ok(false);
                        }
                    }
                }
                Command::TryEach(alternatives) => {
                    let mut matched = false;
                    for alternative in alternatives.iter()? {
                        // A final nil means "none applies" is acceptable (§8.4.10.2).
                        let Some(alternative) = alternative? else {
                            matched = true;
                            break;
                        };
                        let saved = (self.selected, self.claims);
                        if self.run(&alternative, depth + 1)? {
                            matched = true;
                            break;
                        }
                        (self.selected, self.claims) = saved;
                    }
                    if !matched {
                        return Ok(false);
                    }
                }
                Command::RunSequence(inner) if !self.run(&inner, depth + 1)? => return Ok(false),
                _ => {}
            }
        }
        Ok(true)
    }

    /// Not inlined: the parameter iterator (a `KeySet`) would otherwise sit in every
    /// frame of the recursive [`State::run`].
    #[inline(never)]
    fn override_parameters(&mut self, params: Parameters<'a>) -> Result<()> {
        for p in params.iter()? {
            self.set(p?);
        }
        Ok(())
    }

    fn set(&mut self, p: Parameter<'a>) {
        let c = &mut self.claims;
        match p {
            Parameter::VendorIdentifier(v) => c.vendor_id = Some(v),
            Parameter::ClassIdentifier(v) => c.class_id = Some(v),
            Parameter::ImageDigest(v) => c.image_digest = Some(v),
            Parameter::ImageSize(v) => c.image_size = Some(v),
            Parameter::Uri(v) => c.uri = Some(v),
            Parameter::ComponentSlot(v) => c.component_slot = Some(v),
            Parameter::SecurityVersion(v) => c.security_version = Some(v),
            _ => {}
        }
    }
}
