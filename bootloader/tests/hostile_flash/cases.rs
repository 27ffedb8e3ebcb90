// Included once per envelope authenticator by ../hostile_flash.rs, with `Auth` in scope.
use crate::support::*;
use proptest::prelude::*;
use rota_boot::{BootDecision, Slot};

type Dev = Device<4096, 4, Auth>;

const IMAGE: usize = 4_000;

fn device() -> (Dev, Release) {
    let factory = release(0, 1, 1, IMAGE);
    (Dev::new(0xFF, 2, 4, &factory), factory)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes anywhere in the journal: no panic, and what boots is the factory
    /// image (garbage never passes for a committed record, so the state is the factory's).
    #[test]
    fn garbage_in_the_journal_is_ignored(
        garbage in proptest::collection::vec((0usize..8192, any::<u8>()), 1..256),
    ) {
        let (mut d, factory) = device();
        let mut mem = d.flash.contents()[..8192].to_vec();
        for (at, byte) in garbage {
            mem[at] = byte;
        }
        d.flash.overwrite(&mem);
        let decision = d.boot().expect("the simulated flash does not fail");
        prop_assert!(matches!(decision, BootDecision::Boot { trial: false, .. }), "{:?}", decision);
        prop_assert!(d.holds(Slot::A, &factory));
        prop_assert_eq!(d.observe().state.confirmed, Slot::A);
    }

    /// A signed envelope with bytes flipped, programmed into slot B and forced pending,
    /// never boots: the bootloader reverts it and boots the factory image.
    #[test]
    fn a_corrupted_pending_envelope_never_boots(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let (mut d, _) = device();
        let mut bad = release(0, 2, 2, IMAGE);
        for (at, xor) in flips {
            let i = at.index(bad.envelope.len());
            bad.envelope[i] ^= xor;
        }
        program_slot(&mut d.flash, &d.layout, Slot::B, &bad);
        d.force_pending();
        let decision = d.boot().expect("the simulated flash does not fail");
        prop_assert!(matches!(decision, BootDecision::Boot { image, trial: false } if image.slot == Slot::A), "{:?}", decision);
        prop_assert_eq!(d.observe().state.last_revert.map(|r| r.slot), Some(Slot::B));
    }

    /// Arbitrary bytes as slot B's header (after a valid magic), forced pending: refused.
    #[test]
    fn a_garbage_header_never_boots(
        len in any::<u32>(),
        rest in proptest::collection::vec(any::<u8>(), 0..1016),
    ) {
        let (mut d, _) = device();
        let b = d.layout.slot(Slot::B).offset as usize;
        let mut header = b"ROTA".to_vec();
        header.extend_from_slice(&len.to_le_bytes());
        header.extend_from_slice(&rest);
        let mut mem = d.flash.contents()[..b + header.len()].to_vec();
        mem[b..].copy_from_slice(&header);
        d.flash.overwrite(&mem);
        d.force_pending();
        let decision = d.boot().expect("the simulated flash does not fail");
        prop_assert!(matches!(decision, BootDecision::Boot { image, trial: false } if image.slot == Slot::A), "{:?}", decision);
    }
}
