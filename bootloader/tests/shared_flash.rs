//! The simulated flash of a fleet: sparse and shared, so 100,000 simulated devices cost
//! their distinct images, not 100,000 copies (issue 17), and sharing never lets one
//! device's writes show through another's flash.

use std::sync::Arc;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use rota_boot::factory::program_first_image;
use rota_boot::sim::{PowerRail, SectorPool, SimFlash};
use rota_boot::{Layout, Region, Slot};

/// The simulated device's geometry (`rota-agent`'s `device::sim`): 4 KiB sectors, 8-byte
/// words, a 2 KiB slot header and room for 64 KiB images.
type Flash = SimFlash<4096, 8>;
const SECTOR: u32 = 4096;
const HEADER: u32 = 2048;
const SLOT: u32 = (HEADER + 64 * 1024).next_multiple_of(SECTOR);
const IMAGE: usize = 48 * 1024;

fn layout() -> Layout {
    Layout {
        journal: Region::new(0, 2 * SECTOR),
        slots: [
            Region::new(2 * SECTOR, SLOT),
            Region::new(2 * SECTOR + SLOT, SLOT),
        ],
        header_size: HEADER,
        erased: 0xFF,
        max_trial_boots: 3,
    }
}

fn image(version: u8) -> Vec<u8> {
    (0..IMAGE)
        .map(|i| (i as u32 * 131 + u32::from(version) * 7 + (i as u32 >> 8)) as u8)
        .collect()
}

/// A device leaving the factory with image 1 in slot A, on `pool` if given.
fn manufacture(pool: Option<&Arc<SectorPool>>) -> Flash {
    let sectors = (layout().slots[1].end() / u64::from(SECTOR)) as usize;
    let mut flash = Flash::new(sectors, 0xFF);
    if let Some(pool) = pool {
        flash = flash.with_sector_pool(pool.clone());
    }
    program_first_image(&mut flash, &layout(), &[7; 32], &[0xE5; 300], &image(1)).unwrap();
    // A journal record: every device's own.
    flash.write(0, &[0x01; 64]).unwrap();
    flash
}

/// What an update writes: slot B erased, its header, then the image in download-sized
/// chunks, in order.
fn download(flash: &mut Flash, version: u8) {
    let slot = layout().slot(Slot::B);
    flash.erase(slot.offset, slot.end() as u32).unwrap();
    flash.write(slot.offset, &[version; 512]).unwrap();
    let at = layout().image_address(Slot::B);
    for (i, chunk) in image(version).chunks(1024).enumerate() {
        flash.write(at + (i * 1024) as u32, chunk).unwrap();
    }
}

#[test]
fn an_erased_flash_holds_no_sector_memory() {
    // 1 GiB of the device's geometry: its sector table, 12 bytes a sector, and nothing else.
    let flash = Flash::new(256 * 1024, 0xFF);
    assert_eq!(flash.capacity(), 1 << 30);
    assert!(
        flash.resident_bytes() <= 256 * 1024 * 12,
        "{}",
        flash.resident_bytes()
    );
}

#[test]
fn a_thousand_flashes_with_one_image_hold_it_once() {
    let alone = manufacture(None);
    let pool = Arc::new(SectorPool::new());
    let mut fleet: Vec<Flash> = (0..1000).map(|_| manufacture(Some(&pool))).collect();
    let per_device = |fleet: &[Flash]| Flash::distinct_resident_bytes(fleet) / fleet.len();
    let manufactured = per_device(&fleet);
    // Unshared: the journal's sector and the image's last, partly written one.
    assert!(manufactured <= 2 * SECTOR as usize + 1024, "{manufactured}");
    assert_eq!(
        pool.stats().live_sectors,
        12,
        "the slot's full sectors, once"
    );

    for flash in &mut fleet {
        download(flash, 2);
    }
    let updated = per_device(&fleet);
    assert!(updated <= 4 * SECTOR as usize + 1024, "{updated}");
    for flash in &mut fleet {
        flash.share_sectors();
    }
    let shared = per_device(&fleet);
    assert!(shared <= SECTOR as usize + 1024, "{shared}");
    eprintln!(
        "resident flash per device (48 KiB image, 64 KiB slots): alone {} B; \
         across 1,000 devices on one pool: {manufactured} B manufactured, {updated} B \
         after an update, {shared} B once the devices share their partial sectors",
        alone.resident_bytes()
    );
    // Each still reads exactly what it was given.
    let reference = {
        let mut flash = manufacture(None);
        download(&mut flash, 2);
        flash.contents()
    };
    assert!(fleet.iter().all(|flash| flash.contents() == reference));
}

#[test]
fn a_write_to_a_shared_sector_leaves_the_other_flash_unchanged() {
    let pool = Arc::new(SectorPool::new());
    let mut first = manufacture(Some(&pool));
    let second = manufacture(Some(&pool));
    let before = second.contents();
    let shared = Flash::distinct_resident_bytes([&first, &second]);
    assert!(
        shared < first.resident_bytes() + second.resident_bytes() - 10 * SECTOR as usize,
        "the two share the image's sectors"
    );

    // Slot A's last full sector: shared, rewritten on the first device only.
    let sector = layout().slots[0].offset + 11 * SECTOR;
    first.erase(sector, sector + SECTOR).unwrap();
    first.write(sector, &[0x42; 8]).unwrap();
    assert!(second.contents() == before);
    let mut word = [0; 8];
    first.read(sector, &mut word).unwrap();
    assert_eq!(word, [0x42; 8]);

    // A fork shares with its parent, and writes on either side stay on that side.
    let mut fork = second.fork(PowerRail::new());
    fork.erase(layout().slots[0].offset, layout().slots[0].end() as u32)
        .unwrap();
    assert!(second.contents() == before);
}
