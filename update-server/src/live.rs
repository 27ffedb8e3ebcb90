//! This replica's view of the live rollouts, refreshed every tick from the database.
//!
//! It only decides when a check-in can skip the rollout engine: a device that no live
//! rollout could take gets "nothing new" without touching the database. Every assignment
//! is still decided by [`Engine::offer`](crate::rollout::Engine::offer) inside a database
//! transaction, so a stale view can cost a database read, never a wrong assignment (a
//! halted rollout stops assigning the moment the halting report commits, on every
//! replica).

use std::sync::{Arc, RwLock};

use crate::rollout::{DeviceView, Engine, LiveRollout, RolloutError};

#[derive(Debug, Default)]
pub struct LiveRollouts {
    rollouts: RwLock<Arc<Vec<LiveRollout>>>,
}

impl LiveRollouts {
    pub async fn refresh(&self, engine: &Engine) -> Result<(), RolloutError> {
        let fresh = Arc::new(engine.live_rollouts().await?);
        *self.rollouts.write().unwrap() = fresh;
        Ok(())
    }

    /// Whether any live rollout might offer `device` its release.
    pub fn may_offer(&self, device: &DeviceView) -> bool {
        let rollouts = self.rollouts.read().unwrap().clone();
        rollouts.iter().any(|r| r.may_offer(device))
    }
}
