//! Reloading `balancer run`: the new configuration is compared with the running one and only
//! the difference is applied.

use std::{collections::HashMap, sync::Arc};

use crate::{
    check::runner::{RealChecks, ServiceChecks},
    config::{Config, Loaded, load_any_as},
    dataplane::Dataplane,
    model::{Protocol, VirtualService, VrrpInstance},
    notify::{InstanceScripts, fifo::Fifo},
    vrrp::track::script::TrackScript,
};

use super::{
    Daemon, Named,
    egress::with_egress,
    named, service_checks,
    vrrp::{
        SyncGroups, change_statics, init_track_files, instance_inputs, instance_scripts,
        notify_fifos, sync_groups, vrrp_wiring,
    },
};

/// What a reload did, and what it could not do.
#[derive(Default)]
pub(super) struct Changes {
    pub(super) summary: Vec<String>,
    pub(super) failures: Vec<String>,
}

impl Changes {
    pub(super) fn result(self) -> Result<String, String> {
        if !self.failures.is_empty() {
            return Err(format!(
                "partly applied ({}); failed: {}",
                self.summary.join(", "),
                self.failures.join("; ")
            ));
        }
        Ok(if self.summary.is_empty() {
            "reloaded: nothing changed".to_owned()
        } else {
            format!("reloaded: {}", self.summary.join(", "))
        })
    }
}

/// The `virtual_server` block a model service came from: matched by protocol and its set of
/// reals (a `virtual_server_group` may give one block several services).
pub(super) fn virtual_server<'a>(
    config: &'a Config,
    svc: &VirtualService,
) -> Option<&'a crate::config::schema::VirtualServer> {
    let proto = match svc.protocol {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
    };
    let reals: std::collections::BTreeSet<(std::net::IpAddr, u16)> =
        svc.reals.iter().map(|r| (r.addr, r.port)).collect();
    config.virtual_server.iter().find(|vs| {
        vs.protocol
            .as_deref()
            .unwrap_or("UDP")
            .eq_ignore_ascii_case(proto)
            && vs
                .real_server
                .iter()
                .map(|rs| (rs.ip, rs.port.or(vs.port).unwrap_or(svc.port)))
                .collect::<std::collections::BTreeSet<_>>()
                == reals
    })
}

/// Whether the service-wide inputs of the checkers (quorum, hysteresis, sorry server) stayed.
pub(super) fn checks_unchanged(
    old: Option<&crate::config::schema::VirtualServer>,
    new: Option<&crate::config::schema::VirtualServer>,
) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => {
            o.quorum == n.quorum && o.hysteresis == n.hysteresis && o.sorry_server == n.sorry_server
        }
        (None, None) => true,
        _ => false,
    }
}

impl Daemon {
    /// Loads the configuration file again and applies the difference; on any error the
    /// running configuration stays as it was. Returns what changed.
    pub(super) async fn reload(&mut self) -> Result<String, String> {
        tracing::info!(config = %self.options.config.display(), "reloading");
        let result = self.try_reload().await;
        let at = crate::status::unix_now();
        match &result {
            Ok(summary) => {
                self.generation += 1;
                self.last_reload = Some(crate::status::Reload { at, error: None });
                tracing::info!(generation = self.generation, "{summary}");
            }
            Err(e) => {
                self.last_reload = Some(crate::status::Reload {
                    at,
                    error: Some(e.clone()),
                });
                tracing::error!(
                    generation = self.generation,
                    "reload refused, the running configuration stays: {e}"
                );
            }
        }
        result
    }

    pub(super) async fn try_reload(&mut self) -> Result<String, String> {
        let new =
            load_any_as(&self.options.config, self.options.dataplane).map_err(|e| e.to_string())?;
        for w in &new.validated.warnings {
            tracing::warn!("{w}");
        }
        // Everything that can refuse the new configuration, before anything changes.
        let checks =
            service_checks(&new.config, &named(&new.validated.model)).map_err(|e| e.to_string())?;
        let checks: HashMap<String, ServiceChecks> =
            checks.into_iter().map(|c| (c.name.clone(), c)).collect();
        // Sync groups and notify FIFOs are wired into every instance at its start: when they
        // change, every instance restarts with the new wiring.
        let rewire = vrrp_wiring(&self.loaded) != vrrp_wiring(&new);
        let fifos = if rewire {
            notify_fifos(&new.config).map_err(|e| e.to_string())?
        } else {
            self.fifos.clone()
        };

        let mut scripts = HashMap::new();
        for instance in &new.validated.model.vrrp {
            let inputs = instance_inputs(&new.config, instance);
            if rewire
                || self
                    .instances
                    .get(&instance.name)
                    .is_none_or(|running| running.inputs != inputs)
            {
                scripts.insert(
                    instance.name.clone(),
                    instance_scripts(&new.config, instance, &fifos, Some(&self.mailer))
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        let old = std::mem::replace(&mut self.loaded, new);
        let mut changes = Changes::default();
        if let Err(e) = self.mailer.reconfigure(&self.loaded.config.global_defs) {
            changes.failures.push(format!("mail settings: {e}"));
        }
        init_track_files(&self.loaded.config, Some(&old.config));
        self.reload_globals(&old, &mut changes);
        self.reload_interfaces(&old, &mut changes);
        self.reload_services(&old, checks, &mut changes);
        let old_statics = &old.validated.model.statics;
        if *old_statics != self.loaded.validated.model.statics {
            changes
                .failures
                .extend(change_statics(&self.loaded.validated.model.statics, old_statics).await);
            changes
                .summary
                .push("static addresses, routes or rules changed".to_owned());
        }
        if rewire {
            self.rewire_instances(fifos, scripts, &mut changes).await;
        } else {
            self.reload_instances(scripts, &mut changes).await;
        }
        if let Some(change) = self.reload_lvs_sync(&old.config) {
            changes.summary.push(change);
        }
        changes.result()
    }

    /// Sync groups or notify FIFOs changed: every instance stops (as at shutdown, so the
    /// groups' `notify_stop` runs), the groups are wired anew, and every instance starts.
    pub(super) async fn rewire_instances(
        &mut self,
        fifos: Vec<Arc<Fifo>>,
        mut scripts: HashMap<String, (Vec<TrackScript>, InstanceScripts)>,
        changes: &mut Changes,
    ) {
        self.stop_all_instances().await;
        self.fifos = fifos;
        let wanted: Vec<VrrpInstance> = self.loaded.validated.model.vrrp.clone();
        let _vrrp = self.vrrp_runtime.handle.enter();
        self.sync = match sync_groups(
            &self.loaded.config,
            &wanted,
            &self.fifos,
            Some(&self.mailer),
        ) {
            Ok(groups) => groups,
            Err(e) => {
                changes.failures.push(format!("vrrp_sync_group: {e}"));
                SyncGroups::default()
            }
        };
        for instance in &wanted {
            if let Some(scripts) = scripts.remove(&instance.name) {
                self.start_instance(instance, scripts);
            }
        }
        changes.summary.push(
            "vrrp_sync_group or notify FIFO changed: every vrrp_instance restarted".to_owned(),
        );
    }

    /// The connection timeouts apply at once; what is fixed when the program loads (table
    /// size, ICMP answers), where the control socket and metrics listen, wait for a restart.
    pub(super) fn reload_globals(&self, old: &Loaded, changes: &mut Changes) {
        let (before, after) = (&old.config, &self.loaded.config);
        if before.connections.globals() != after.connections.globals() {
            match self.lock().set_timeouts(after.connections.globals()) {
                Ok(()) => changes.summary.push("connection timeouts".to_owned()),
                Err(e) => changes.failures.push(format!("connection timeouts: {e}")),
            }
        }
        for (key, changed) in [
            (
                "connections.table_size",
                before.connections.table_size != after.connections.table_size,
            ),
            (
                "xdp.icmp_too_big",
                before.xdp.icmp_too_big != after.xdp.icmp_too_big,
            ),
            ("dataplane", before.dataplane != after.dataplane),
            ("control.socket", before.control != after.control),
            ("metrics", before.metrics != after.metrics),
        ] {
            if changed {
                changes
                    .summary
                    .push(format!("{key} changed: takes effect at the next start"));
            }
        }
    }

    /// Attaches to the new interfaces (before services change) and detaches from the dropped
    /// ones; a changed mode re-attaches everywhere.
    pub(super) fn reload_interfaces(&self, old: &Loaded, changes: &mut Changes) {
        let Changes { summary, failures } = changes;
        let mut program = self.lock();
        let Some(program) = program.xdp() else {
            return;
        };
        {
            let cfg = &self.loaded.config.xdp;
            for interface in &cfg.interfaces {
                let mode_changed = old.config.xdp.mode != cfg.mode;
                if mode_changed {
                    let _ = program.detach(interface);
                }
                if mode_changed || !old.config.xdp.interfaces.contains(interface) {
                    match program.attach(interface, cfg.mode) {
                        Ok(mode) => summary.push(format!("attached to {interface} ({mode})")),
                        Err(e) => failures.push(format!("attaching to {interface}: {e}")),
                    }
                }
            }
            for interface in &old.config.xdp.interfaces {
                if !cfg.interfaces.contains(interface) {
                    match program.detach(interface) {
                        Ok(()) => summary.push(format!("detached from {interface}")),
                        Err(e) => failures.push(format!("detaching from {interface}: {e}")),
                    }
                }
            }
        }
    }

    /// Services: unchanged ones are not touched (their checkers keep running); a changed
    /// one is applied in one step, reals that stay keep their connections, and reals whose
    /// checks did not change keep their checker state and current weight.
    pub(super) fn reload_services(
        &mut self,
        old: &Loaded,
        mut checks: HashMap<String, ServiceChecks>,
        changes: &mut Changes,
    ) {
        let Changes { summary, failures } = changes;
        let old_services: HashMap<String, &VirtualService> = named(&old.validated.model)
            .into_iter()
            .map(|n| (n.name, n.service))
            .collect();
        let mut kept = std::collections::HashSet::new();
        let model = self.loaded.validated.model.clone();
        for Named {
            name,
            fwmark,
            service,
        } in named(&model)
        {
            kept.insert(name.clone());
            let before = old_services.get(&name).copied();
            let new_checks = checks.remove(&name);
            let old_vs = before.and_then(|s| virtual_server(&old.config, s));
            let new_vs = virtual_server(&self.loaded.config, service);
            let carry = |r: &RealChecks| match (old_vs, new_vs) {
                (Some(o), Some(n)) => crate::check::config::same_checks(o, n, r.addr, r.port),
                _ => false,
            };
            let checks_same = match (&new_checks, old_vs, new_vs) {
                (None, _, _) => !self.checks.services().any(|s| s == name),
                (Some(c), Some(_), Some(_)) => {
                    self.checks.services().any(|s| s == name)
                        && c.reals.iter().all(carry)
                        && checks_unchanged(old_vs, new_vs)
                }
                _ => false,
            };
            if before == Some(service) && checks_same {
                continue;
            }
            // Reals whose checks continue keep the weight their checkers gave them.
            let mut programmed = with_egress(service, &self.egress);
            if let Some(c) = &new_checks {
                let current = self.checks.weights(&name);
                for r in &mut programmed.reals {
                    let continues = c
                        .reals
                        .iter()
                        .find(|x| x.addr == r.addr && x.port == r.port)
                        .is_some_and(carry);
                    if let Some((_, _, w)) = current
                        .iter()
                        .find(|(a, p, _)| continues && *a == r.addr && *p == r.port)
                    {
                        r.weight = *w;
                    }
                }
            }
            let applied = self.lock().apply_named(&name, fwmark, &programmed);
            match applied {
                Ok(()) => summary.push(format!(
                    "{} {name}",
                    if before.is_some() { "changed" } else { "added" }
                )),
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            }
            match new_checks {
                Some(c) => self.checks.replace(c, carry),
                None => self.checks.remove(&name),
            }
        }
        for name in old_services.keys().filter(|n| !kept.contains(*n)) {
            self.checks.delete(name);
            match self.lock().remove(name) {
                Ok(()) => summary.push(format!("removed {name}")),
                Err(e) => failures.push(format!("removing {name}: {e}")),
            }
        }
    }

    /// VRRP: an unchanged instance runs on untouched (no transition); a changed one is
    /// restarted; a removed one stops as at shutdown. `scripts` holds the prepared scripts of
    /// every instance to (re)start.
    pub(super) async fn reload_instances(
        &mut self,
        mut scripts: HashMap<String, (Vec<TrackScript>, InstanceScripts)>,
        changes: &mut Changes,
    ) {
        let summary = &mut changes.summary;
        let wanted: Vec<VrrpInstance> = self.loaded.validated.model.vrrp.clone();
        let names: Vec<String> = self.instances.keys().cloned().collect();
        for name in names {
            if !wanted.iter().any(|i| i.name == name) {
                self.stop_instance(&name).await;
                summary.push(format!("stopped vrrp_instance {name}"));
            }
        }
        for instance in &wanted {
            if let Some(scripts) = scripts.remove(&instance.name) {
                let restarted = self.instances.contains_key(&instance.name);
                self.stop_instance(&instance.name).await;
                self.start_instance(instance, scripts);
                summary.push(format!(
                    "{} vrrp_instance {}",
                    if restarted { "restarted" } else { "started" },
                    instance.name
                ));
            }
        }
    }
}
