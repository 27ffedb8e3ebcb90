//! The agent's loop: settle what the last boot means, deliver queued reports, check in,
//! and install what is assigned — then wait as long as the server or the backoff says.
//!
//! Every state change is made on the device first and recorded after, and every record
//! can be re-derived from the device: a power cut anywhere leaves the agent able to
//! finish the job, with reports that the server counts once (their event ids are kept).

mod orders;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::blocking::Client;
use rota_boot::RootOfTrust;
use rota_protocol::DeviceCertificate;
use rota_protocol::api::{
    Assignment, AttestationResult, AttestationState, CheckInQuery, LastResult, Report, ReportKind,
    SlotState,
};

use crate::attest;
use crate::backoff::Backoff;
use crate::device::{Device, Running};
use crate::error::DeviceError;
use crate::install::{Failure, Transfer, install};
use crate::release::{self, Repo};
use crate::server::{AnswerLimits, CheckIn, ServerClient, ServerError};
use crate::state::{AgentState, Job, Phase};

/// How the agent talks to the server and paces itself.
#[derive(Clone, Debug)]
pub struct Config {
    /// rota-server's base URL, `http://host:port`.
    pub server: String,
    /// Bytes per read from the network and write to flash: the agent's memory for the image.
    pub chunk_size: usize,
    pub backoff: Backoff,
    /// Bounds on the server's poll hint.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// The most the agent reads of each kind of server answer.
    pub answer_limits: AnswerLimits,
    /// The operator's device CAs: the keys whose orders (decommission, transfer) this
    /// device obeys. An ownership transfer replaces them with the new operator's.
    pub operator_cas: Vec<rota_protocol::PublicKey>,
}

impl Config {
    /// Field defaults: 16 KiB chunks, retries from 1 s up to 5 min, polls of 10 s to 1 h,
    /// [`AnswerLimits::default`].
    pub fn new(server: &str) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            chunk_size: 16 * 1024,
            backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
            },
            poll_min: Duration::from_secs(10),
            poll_max: Duration::from_secs(3600),
            answer_limits: AnswerLimits::default(),
            operator_cas: Vec::new(),
        }
    }

    /// The TUF repository rota-server serves (metadata and targets).
    pub fn tuf(&self) -> rota_tuf::Config {
        rota_tuf::Config {
            durable: crate::state::syncs_files(),
            ..rota_tuf::Config::new(
                format!("{}/tuf/metadata/", self.server),
                format!("{}/tuf/targets/", self.server),
            )
        }
    }
}

/// What one pass of the loop did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to install.
    UpToDate,
    /// A new version passed its health check and is confirmed.
    Confirmed(u64),
    /// A new version failed its trial; the previous one runs again.
    Reverted { version: u64, reason: String },
    /// An assignment was refused, and reported as failed; nothing was installed.
    Refused(String),
    /// The network or the server failed; progress is kept for the retry.
    Retrying(String),
    /// An operator's decommission order was carried out: the device's credentials are
    /// erased, and it can no longer authenticate anywhere. The agent has nothing left to do.
    Decommissioned,
}

/// Something happened that the fleet view may show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `at` bytes of the image are on flash, of `of`. The first event of an attempt
    /// says where it (re)started.
    Downloading {
        version: u64,
        at: u64,
        of: u64,
    },
    Outcome(Outcome),
    /// The server's verdict on evidence the agent sent (at enrolment or on request).
    Attested(AttestationResult),
    /// The identity key was rotated: a new key, a new certificate, the old key destroyed.
    Rotated,
    /// The device moved to another operator (an ownership transfer) and its new server
    /// certified it.
    Transferred {
        server: String,
    },
}

pub struct Agent<D: Device> {
    device: D,
    config: Config,
    http: Client,
    server: ServerClient,
    certificate: Option<DeviceCertificate>,
    state: AgentState,
    class_id: [u8; 16],
    last_check_in: Option<CheckIn>,
    failures: u32,
    on_event: Box<dyn FnMut(&Event) + Send>,
    /// The device carried out a decommission order: its credentials are gone.
    erased: bool,
}

impl<D: Device> Agent<D> {
    /// An agent for `device`; `certificate` lets it enrol itself with the server.
    pub fn new(
        mut device: D,
        config: Config,
        http: Client,
        certificate: Option<DeviceCertificate>,
    ) -> Result<Self, DeviceError> {
        let class_id = device.boot_parts().rot.class_id().map_err(|e| {
            DeviceError::Boot(format!(
                "cannot read the device class from the root of trust: {e:?}"
            ))
        })?;
        let state = AgentState::load(device.state_dir())?;
        let mut agent = Self {
            server: ServerClient::new(http.clone(), &config.server, config.answer_limits),
            device,
            config,
            http,
            certificate,
            state,
            class_id,
            last_check_in: None,
            failures: 0,
            on_event: Box::new(|_| {}),
            erased: false,
        };
        agent.follow_owner();
        Ok(agent)
    }

    /// Calls `f` on every [`Event`].
    pub fn on_event(&mut self, f: impl FnMut(&Event) + Send + 'static) {
        self.on_event = Box::new(f);
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    pub fn into_device(self) -> D {
        self.device
    }

    /// Reloads the persisted state: what a restarted agent knows.
    pub fn restart(&mut self) -> Result<(), DeviceError> {
        self.state = AgentState::load(self.device.state_dir())?;
        self.last_check_in = None;
        self.follow_owner();
        Ok(())
    }

    /// One pass; returns what happened and how long to wait before the next.
    pub fn cycle(&mut self) -> Result<(Outcome, Duration), DeviceError> {
        let outcome = self.pass()?;
        let asked = self.server.take_retry_after();
        let wait = match &outcome {
            Outcome::Retrying(_) => {
                let backoff = self.config.backoff.delay(self.failures);
                self.failures += 1;
                // A busy server's `Retry-After` (a 503 or a 429) is honoured when it asks
                // for longer than the backoff would wait.
                asked.map_or(backoff, |asked| asked.max(backoff))
            }
            _ => {
                self.failures = 0;
                let hint = self
                    .last_check_in
                    .as_ref()
                    .map(|c| Duration::from_secs(c.answer.poll_after_s.into()))
                    .unwrap_or(self.config.poll_min);
                hint.clamp(self.config.poll_min, self.config.poll_max)
            }
        };
        (self.on_event)(&Event::Outcome(outcome.clone()));
        Ok((outcome, wait))
    }

    fn pass(&mut self) -> Result<Outcome, DeviceError> {
        if self.erased {
            return Ok(Outcome::Decommissioned);
        }
        // A decommission cut in the middle of its erase is finished first.
        if crate::state::is_erasing(self.device.state_dir()) {
            return self.finish_erase();
        }
        // An order taken before a restart is finished before anything else.
        if self.state.order.is_some() {
            return self.carry_out_order();
        }
        let settled = self.settle_boot()?;
        if let Err(e) = self.deliver()? {
            return Ok(Outcome::Retrying(e.to_string()));
        }
        if let Some(outcome) = settled {
            return Ok(outcome);
        }
        let running = self.running()?;
        let query = CheckInQuery {
            version: running.version,
            slot: SlotState::Confirmed,
            last: self.state.last,
        };
        let check_in =
            match self
                .server
                .check_in(self.device.identity(), &query, self.last_check_in.as_ref())
            {
                Ok(c) => c,
                Err(e) => return Ok(Outcome::Retrying(e.to_string())),
            };
        let assignment = check_in.answer.assignment.clone();
        let attest = check_in.answer.attest;
        let rotate = check_in.answer.rotate;
        let order = check_in.answer.order.clone();
        self.last_check_in = Some(check_in);
        if let Some(order) = order {
            // The operator orders the device to leave it (decommission or transfer):
            // nothing else is done meanwhile.
            return self.take_order(order);
        }
        if rotate {
            // The server asks for a new identity key (on demand, or its schedule).
            match crate::rotate::rotate(&mut self.device, &self.server) {
                Ok(certificate) => {
                    self.certificate = Some(certificate);
                    self.last_check_in = None;
                    (self.on_event)(&Event::Rotated);
                }
                Err(e) => tracing::warn!(error = %e, "could not rotate the identity key"),
            }
        }
        if attest {
            // The server asks for evidence (on request, or a class that attests and has
            // none from this device yet).
            if let Err(e) = self.attest() {
                tracing::warn!(error = %e, "could not send the attestation the server asked for");
            }
        }
        let Some(assignment) = assignment else {
            // No assignment: whatever was in progress is no longer wanted (the rollout
            // was paused, halted or aborted). The partial slot stays until the next stage.
            if self.state.job.take().is_some() {
                self.save()?;
            }
            return Ok(Outcome::UpToDate);
        };
        let outcome = self.update(assignment, running)?;
        if let Err(e) = self.deliver()? {
            tracing::debug!(error = %e, "reports stay queued");
        }
        Ok(outcome)
    }

    /// Installs `assignment`, reboots into it and settles the trial.
    fn update(&mut self, assignment: Assignment, running: Running) -> Result<Outcome, DeviceError> {
        let same_job = self
            .state
            .job
            .as_ref()
            .is_some_and(|j| j.assignment == assignment && j.phase == Phase::Downloading);
        if !same_job {
            self.state.job = Some(Job {
                assignment: assignment.clone(),
                phase: Phase::Downloading,
                from_version: running.version,
                announced: false,
            });
            self.save()?;
        }
        match self.download_and_install(&assignment, running) {
            Ok(_) => {}
            Err(Failure::Transient(why)) => return Ok(Outcome::Retrying(why)),
            Err(Failure::Device(e)) => return Err(e),
            Err(Failure::Refused(why)) => {
                // The refused answer may have been forged on the way: the next check-in
                // asks afresh instead of trusting a 304 to confirm the cached body.
                self.last_check_in = None;
                tracing::warn!(device = %self.device.identity().device_id, reason = %why, "update refused");
                self.finish(
                    &assignment,
                    ReportKind::Failed,
                    assignment.version,
                    Some(&why),
                    LastResult::Failed,
                )?;
                return Ok(Outcome::Refused(why));
            }
        }
        if let Some(job) = &mut self.state.job {
            job.phase = Phase::Installed;
        }
        self.queue(&assignment, ReportKind::Installed, assignment.version, None)?;
        self.device.reboot()?;
        let outcome = self.settle_boot()?.unwrap_or(Outcome::UpToDate);
        if matches!(outcome, Outcome::Confirmed(_))
            && crate::anchors::has_deferred(self.device.state_dir())
        {
            // A command deferred until the new image ran (a revocation of the old
            // firmware key) is applied now.
            self.apply_anchor_commands();
        }
        Ok(outcome)
    }

    /// Applies the trust-anchor commands published since the root of trust's counter
    /// (`crate::anchors`); what it did is logged and recorded in the state directory.
    pub fn apply_anchor_commands(&mut self) {
        let tuf_dir: PathBuf = self.device.state_dir().join("tuf");
        let repo = Repo {
            tuf_dir: &tuf_dir,
            tuf: self.config.tuf(),
            http: self.http.clone(),
        };
        if let Err(e) = release::apply_anchor_commands(&repo, &mut self.device, self.class_id) {
            tracing::warn!(error = %e, "could not apply trust-anchor commands");
        }
    }

    /// What the root of trust has left: free key slots, revoked slots, trust-anchor
    /// commands applied and left, floor raises left (what `status` reports).
    pub fn trust_status(&mut self) -> Result<rota_boot::TrustStatus, DeviceError> {
        self.device
            .boot_parts()
            .updater()?
            .trust_status()
            .map_err(|e| DeviceError::Boot(e.to_string()))
    }

    fn download_and_install(
        &mut self,
        assignment: &Assignment,
        running: Running,
    ) -> Result<Transfer, Failure> {
        let tuf_dir: PathBuf = self.device.state_dir().join("tuf");
        // Trust-anchor commands published since the root of trust's counter are applied
        // first: the release may be signed by the key one of them adds.
        let release = release::verify_on(
            assignment,
            &Repo {
                tuf_dir: &tuf_dir,
                tuf: self.config.tuf(),
                http: self.http.clone(),
            },
            &mut self.device,
            self.class_id,
            running.version,
        )?;
        let announce = self.state.job.as_ref().is_some_and(|j| !j.announced);
        if announce {
            self.queue(
                assignment,
                ReportKind::Downloading,
                assignment.version,
                None,
            )?;
            if let Some(job) = &mut self.state.job {
                job.announced = true;
            }
            self.save()?;
        }
        let version = release.version;
        let chunk = self.config.chunk_size;
        let http = self.http.clone();
        let on_event = &mut self.on_event;
        let mut updater = self.device.boot_parts().updater()?;
        install(&mut updater, &http, &release, chunk, |at, of| {
            on_event(&Event::Downloading { version, at, of })
        })
    }

    /// After a boot: a trial image is health-checked, then confirmed or reverted; an
    /// installed job whose trial is over is resolved from what runs now.
    fn settle_boot(&mut self) -> Result<Option<Outcome>, DeviceError> {
        let running = self.running()?;
        // The journal, not the boot-time view, says whether the trial is still open.
        let status = self.device.boot_parts().updater()?.status();
        if status.on_trial {
            return self.settle_trial(running).map(Some);
        }
        let Some(job) = self.state.job.clone() else {
            return Ok(None);
        };
        if job.phase != Phase::Installed {
            return Ok(None);
        }
        let assignment = &job.assignment;
        if running.version == assignment.version {
            // Confirmed before a power cut kept the agent from recording it.
            self.finish(
                assignment,
                ReportKind::Confirmed,
                running.version,
                None,
                LastResult::Confirmed,
            )?;
            return Ok(Some(Outcome::Confirmed(running.version)));
        }
        let reason = match status.last_revert {
            Some(revert) => format!(
                "the bootloader went back to version {}: {:?}",
                running.version, revert.reason
            ),
            None => format!("version {} did not stay running", assignment.version),
        };
        self.finish(
            assignment,
            ReportKind::Reverted,
            assignment.version,
            Some(&reason),
            LastResult::Reverted,
        )?;
        Ok(Some(Outcome::Reverted {
            version: assignment.version,
            reason,
        }))
    }

    fn settle_trial(&mut self, running: Running) -> Result<Outcome, DeviceError> {
        let health = self.device.health_check();
        let job = self.state.job.clone();
        let assignment = job.as_ref().map(|j| j.assignment.clone());
        // rota-boot acts first; the record follows (a cut in between is settled from
        // what runs after the next boot).
        let mut updater = self.device.boot_parts().updater()?;
        let acted = match &health {
            Ok(()) => updater
                .confirm()
                .map_err(|e| DeviceError::Boot(format!("cannot confirm: {e}"))),
            Err(_) => updater
                .revert()
                .map_err(|e| DeviceError::Boot(format!("cannot revert: {e}"))),
        };
        acted?;
        match health {
            Ok(()) => {
                self.finish_opt(
                    assignment.as_ref(),
                    ReportKind::Confirmed,
                    running.version,
                    None,
                    LastResult::Confirmed,
                )?;
                Ok(Outcome::Confirmed(running.version))
            }
            Err(why) => {
                let reason = format!("the health check failed: {why}");
                self.finish_opt(
                    assignment.as_ref(),
                    ReportKind::Reverted,
                    running.version,
                    Some(&reason),
                    LastResult::Reverted,
                )?;
                self.device.reboot()?;
                Ok(Outcome::Reverted {
                    version: running.version,
                    reason,
                })
            }
        }
    }

    /// Ends the job with a final report.
    fn finish(
        &mut self,
        assignment: &Assignment,
        kind: ReportKind,
        version: u64,
        reason: Option<&str>,
        last: LastResult,
    ) -> Result<(), DeviceError> {
        self.finish_opt(Some(assignment), kind, version, reason, last)
    }

    fn finish_opt(
        &mut self,
        assignment: Option<&Assignment>,
        kind: ReportKind,
        version: u64,
        reason: Option<&str>,
        last: LastResult,
    ) -> Result<(), DeviceError> {
        self.state.job = None;
        self.state.last = Some(last);
        let report = report(assignment, kind, version, reason)?;
        self.state.outbox.push(report);
        self.save()
    }

    fn queue(
        &mut self,
        assignment: &Assignment,
        kind: ReportKind,
        version: u64,
        reason: Option<&str>,
    ) -> Result<(), DeviceError> {
        let report = report(Some(assignment), kind, version, reason)?;
        self.state.outbox.push(report);
        self.save()
    }

    /// Enrols if needed, then sends queued reports, oldest first. A report the server
    /// refuses (4xx) will never pass and is dropped; a transient failure keeps the rest
    /// (the inner error). Each step is saved before the next: a state file that cannot
    /// be written stops the agent (the outer error) rather than being forgotten, as the
    /// next restart would resend what the server already has.
    fn deliver(&mut self) -> Result<Result<(), ServerError>, DeviceError> {
        if let Err(e) = self.present_transfer()? {
            return Ok(Err(e));
        }
        if let (false, Some(certificate)) = (self.state.enrolled, &self.certificate) {
            if let Err(e) = self.server.enroll(self.device.identity(), certificate) {
                return Ok(Err(e));
            }
            self.state.enrolled = true;
            self.save()?;
            // Evidence at enrolment; if it does not get through, the server asks again at
            // the next check-in.
            if let Err(e) = self.attest() {
                tracing::warn!(error = %e, "could not attest at enrolment");
            }
        }
        while let Some(mut report) = self.state.outbox.first().cloned() {
            // Every report of a confirmed boot carries evidence of that boot, answering a
            // challenge fetched now (so a retried report answers a fresh one).
            if report.kind == ReportKind::Confirmed {
                match self.server.attestation_nonce(self.device.identity()) {
                    Ok(nonce) => report.evidence = Some(attest::evidence(&self.device, &nonce)?),
                    Err(ServerError::Refused { status, message }) => {
                        tracing::warn!(status, %message, "the server gave no attestation challenge; reporting without evidence");
                    }
                    Err(e) => return Ok(Err(e)),
                }
            }
            match self.server.report(self.device.identity(), &report) {
                Ok(_) => {}
                Err(ServerError::Refused { status, message }) => {
                    tracing::warn!(status, %message, kind = %report.kind, "the server refused a report; dropping it");
                }
                Err(e) => return Ok(Err(e)),
            }
            self.state.outbox.remove(0);
            self.save()?;
        }
        Ok(Ok(()))
    }

    /// Sends evidence of the running boot, answering a fresh challenge; returns the
    /// server's verdict.
    pub fn attest(&mut self) -> Result<AttestationResult, AttestError> {
        let identity = self.device.identity();
        let nonce = self.server.attestation_nonce(identity)?;
        let evidence = attest::evidence(&self.device, &nonce)?;
        let result = self.server.attest(identity, evidence)?;
        if result.attestation == AttestationState::Failed {
            tracing::warn!(reason = ?result.reason, "the server's attestation of this device failed");
        }
        (self.on_event)(&Event::Attested(result.clone()));
        Ok(result)
    }

    fn running(&self) -> Result<Running, DeviceError> {
        self.device.running().ok_or(DeviceError::NothingBootable)
    }

    fn save(&self) -> Result<(), DeviceError> {
        Ok(self.state.save(self.device.state_dir())?)
    }

    /// The persisted state (for tests and status displays).
    pub fn state(&self) -> &AgentState {
        &self.state
    }
}

fn report(
    assignment: Option<&Assignment>,
    kind: ReportKind,
    version: u64,
    reason: Option<&str>,
) -> Result<Report, DeviceError> {
    let reason = reason.map(|r| r.chars().take(rota_protocol::api::MAX_REASON_LEN).collect());
    Report::new(
        kind,
        version,
        assignment.map(|a| a.rollout_id.clone()),
        reason,
    )
    .map_err(DeviceError::from)
}

/// Why evidence was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Device(#[from] DeviceError),
}
