//! Operator orders on the device (`docs/design/lifecycle.md`, sections 6 and 7): a
//! decommission erases the device's credentials; a transfer moves it to another operator.
//!
//! The steps, each recorded before the next, so a cut anywhere resumes where it stopped:
//! 1. **taken**: the order verified (signed by a device CA this device obeys, for this
//!    device, within its validity, not older than the current owner; a transfer's new
//!    root cross-signed by the current root's keys) and recorded in the agent's state;
//! 2. **reported**: the issuing server acknowledged it (`order-done`, signed by the
//!    identity key: the device's last word there — for a decommission, signed before
//!    the erase);
//! 3. **carried out**: a decommission erases the identity key, the state and the UDS
//!    ([`Device::zeroize`]); a transfer swaps the trusted TUF root and commits the new
//!    owner in one state write, dropping the old operator's history (queued reports,
//!    last result, job);
//! 4. a transferred device presents the order and its certificate to the new server,
//!    which certifies it (`POST /api/v1/device/transfer`).

use std::time::SystemTime;

use rota_protocol::order::{OrderAction, OrderBody, SignedOrder, TransferIn, TransferTo};
use rota_protocol::{PublicKey, identity};

use super::{Agent, Event, Outcome};
use crate::device::Device;
use crate::error::DeviceError;
use crate::server::{ServerClient, ServerError, unix_ms};
use crate::state::{Owner, PendingOrder};

impl<D: Device> Agent<D> {
    /// Points the agent at the operator its state names (after a transfer).
    pub(super) fn follow_owner(&mut self) {
        let Some(owner) = &self.state.owner else {
            return;
        };
        self.config.server = owner.server.trim_end_matches('/').to_owned();
        self.config.operator_cas = decode_key(&owner.device_ca).into_iter().collect();
        self.server = ServerClient::new(
            self.http.clone(),
            &self.config.server,
            self.config.answer_limits,
        );
        if let Some(certificate) = &owner.certificate {
            self.certificate = Some(certificate.clone());
        }
    }

    /// Step 1: an order from the check-in answer.
    pub(super) fn take_order(&mut self, order: SignedOrder) -> Result<Outcome, DeviceError> {
        if let Err(why) = self.verify_order(&order) {
            // A forged or stale order changes nothing; the next check-in asks afresh.
            self.last_check_in = None;
            tracing::warn!(reason = %why, "refused an operator order");
            return Ok(Outcome::Refused(format!(
                "the operator order is refused: {why}"
            )));
        }
        self.state.order = Some(PendingOrder {
            order,
            reported: false,
        });
        self.save()?;
        self.carry_out_order()
    }

    fn verify_order(&self, order: &SignedOrder) -> Result<OrderBody, String> {
        let device_id = &self.device.identity().device_id;
        let now = unix_ms() / 1000;
        let body = order
            .verify(&self.config.operator_cas, device_id, now)
            .map_err(|e| e.to_string())?;
        // Out of order: issued before this device's current owner took it over.
        if let Some(owner) = &self.state.owner
            && body.issued_at < owner.since
        {
            return Err(format!(
                "it was issued at {} (unix seconds), before this device moved to its current operator ({})",
                body.issued_at, owner.since
            ));
        }
        if let Some(to) = &body.transfer {
            self.verify_new_root(to)?;
        }
        Ok(body)
    }

    /// The new repository's root must carry a threshold of the trusted root's root keys
    /// and of its own (rota-tuf's `cross_signed_root`).
    fn verify_new_root(&self, to: &TransferTo) -> Result<(), String> {
        let path = self.device.state_dir().join("tuf").join("root.json");
        let current = std::fs::read(&path)
            .map_err(|e| format!("cannot read the trusted root {}: {e}", path.display()))?;
        rota_tuf::TrustedSet::new(&current, SystemTime::now())
            .and_then(|set| set.cross_signed_root(&to.tuf_root))
            .map(|_| ())
            .map_err(|e| format!("the new operator's TUF root is not cross-signed: {e}"))
    }

    /// Steps 2 and 3, from wherever the last run stopped.
    pub(super) fn carry_out_order(&mut self) -> Result<Outcome, DeviceError> {
        let Some(pending) = self.state.order.clone() else {
            return Ok(Outcome::UpToDate);
        };
        // Verified when taken; only its claims are read again.
        let body = pending
            .order
            .claims_unverified()
            .map_err(|e| DeviceError::Boot(format!("the recorded order is unreadable: {e}")))?;
        if !pending.reported {
            match self
                .server
                .order_done(self.device.identity(), &pending.order)
            {
                Ok(()) => {}
                Err(ServerError::Refused { status, message }) => {
                    // The server will never acknowledge it (withdrawn, or not its order):
                    // nothing is erased or moved without that last word.
                    tracing::warn!(status, %message, "the server refused the order's report; dropping the order");
                    self.state.order = None;
                    self.save()?;
                    return Ok(Outcome::Refused(format!(
                        "the server did not acknowledge the order ({status}): {message}"
                    )));
                }
                Err(e) => return Ok(Outcome::Retrying(e.to_string())),
            }
            if let Some(order) = &mut self.state.order {
                order.reported = true;
            }
            self.save()?;
        }
        match (body.action, body.transfer) {
            (OrderAction::Decommission, _) => {
                crate::state::begin_erase(self.device.state_dir())?;
                self.finish_erase()
            }
            (OrderAction::Transfer, Some(to)) => {
                self.move_to(to, pending.order, body.issued_at)?;
                match self.present_transfer()? {
                    Ok(()) => Ok(Outcome::UpToDate),
                    Err(e) => Ok(Outcome::Retrying(e.to_string())),
                }
            }
            (OrderAction::Transfer, None) => Err(DeviceError::Boot(
                "the recorded transfer names no operator".into(),
            )),
        }
    }

    /// Step 3 of a decommission, also after a cut in the middle of it.
    pub(super) fn finish_erase(&mut self) -> Result<Outcome, DeviceError> {
        self.device.zeroize()?;
        let dir = self.device.state_dir();
        crate::state::end_erase(dir).map_err(|e| {
            DeviceError::Zeroize(format!("cannot end the erase of {}: {e}", dir.display()))
        })?;
        self.erased = true;
        self.state = Default::default();
        tracing::info!("decommissioned: the device's credentials are erased");
        Ok(Outcome::Decommissioned)
    }

    /// Step 3 of a transfer: the new root replaces the old repository's metadata, then
    /// one state write commits the new owner. Repeating it after a cut writes the same.
    fn move_to(
        &mut self,
        to: TransferTo,
        order: SignedOrder,
        since: u64,
    ) -> Result<(), DeviceError> {
        let tuf = self.device.state_dir().join("tuf");
        let failed = |e: std::io::Error| DeviceError::Open {
            what: "the TUF metadata",
            path: tuf.clone(),
            detail: e.to_string(),
        };
        // The old repository's timestamp, snapshot and targets versions mean nothing in
        // the new one (its rollback checks start from its own root).
        for entry in std::fs::read_dir(&tuf).map_err(failed)? {
            let entry = entry.map_err(failed)?;
            if entry.file_name() != "root.json" && entry.file_type().map_err(failed)?.is_file() {
                crate::state::remove(&entry.path()).map_err(failed)?;
            }
        }
        crate::state::write_atomically(&tuf.join("root.json"), &to.tuf_root)?;
        let state = &mut self.state;
        state.owner = Some(Owner {
            server: to.server.clone(),
            device_ca: to.device_ca.clone(),
            since,
            presenting: Some(order),
            certificate: None,
        });
        // The old operator's history stays with the old operator.
        state.order = None;
        state.outbox.clear();
        state.last = None;
        state.job = None;
        state.enrolled = false;
        self.save()?;
        self.last_check_in = None;
        self.follow_owner();
        tracing::info!(server = %to.server, "moved to a new operator");
        Ok(())
    }

    /// Step 4: the new server certifies the device on the transfer order (inner error:
    /// retry later).
    pub(super) fn present_transfer(&mut self) -> Result<Result<(), ServerError>, DeviceError> {
        let Some(owner) = &self.state.owner else {
            return Ok(Ok(()));
        };
        let (Some(order), Some(certificate)) = (&owner.presenting, &self.certificate) else {
            return Ok(Ok(()));
        };
        let request = TransferIn {
            certificate: certificate.clone(),
            order: order.clone(),
        };
        let certified = match self.server.transfer_in(self.device.identity(), &request) {
            Ok(certified) => certified.certificate,
            Err(e) => return Ok(Err(e)),
        };
        let device_id = &self.device.identity().device_id;
        let key = self.device.identity().key.public_key();
        let claims = certified
            .claims_unverified()
            .map_err(|e| DeviceError::Rotation(format!("the new certificate is malformed: {e}")))?;
        let issuer_ok = decode_key(&owner.device_ca)
            .is_some_and(|ca| claims.issuer == identity::issuer_id(&ca));
        if claims.device_id != *device_id || claims.device_key().ok() != Some(key) || !issuer_ok {
            return Ok(Err(ServerError::Transient(
                "the new server's certificate is not for this device, its key and the new operator's CA".into(),
            )));
        }
        let server = owner.server.clone();
        if let Some(owner) = &mut self.state.owner {
            owner.presenting = None;
            owner.certificate = Some(certified.clone());
        }
        self.state.enrolled = true;
        self.save()?;
        self.certificate = Some(certified);
        (self.on_event)(&Event::Transferred { server });
        Ok(Ok(()))
    }
}

fn decode_key(hex_key: &str) -> Option<PublicKey> {
    let bytes = hex::decode(hex_key).ok()?;
    PublicKey::from_raw(&bytes).filter(|k| k.validate().is_ok())
}
