//! A data plane that only records the weights the checkers write: the test double of the
//! runner's unit tests and of the namespace tests in `balancer-tests` (which enable the
//! `test-double` feature). Times are tokio's, so that a paused clock stamps them too.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::check::SharedDataplane;
use crate::dataplane::{Dataplane, DataplaneError};
use crate::model::VirtualService;

/// One `set_weight_fast`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub service: String,
    pub addr: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub at: Instant,
}

/// Every `set_weight_fast`, in order, and how many flushes followed; `apply` and `remove`
/// are accepted and ignored.
#[derive(Debug, Default)]
pub struct RecordingDataplane {
    pub writes: Vec<Write>,
    /// How many writes had been made at each `flush`.
    pub flushes: Vec<usize>,
}

impl RecordingDataplane {
    /// A recorder, and the same recorder as the checkers take it.
    #[must_use]
    pub fn shared() -> (Arc<Mutex<Self>>, SharedDataplane) {
        let recorder = Arc::new(Mutex::new(Self::default()));
        let dataplane: SharedDataplane = recorder.clone();
        (recorder, dataplane)
    }

    /// The weight last written for a real, if any was.
    #[must_use]
    pub fn weight(&self, addr: IpAddr, port: u16) -> Option<u32> {
        self.writes
            .iter()
            .rev()
            .find(|w| w.addr == addr && w.port == port)
            .map(|w| w.weight)
    }

    /// Locks a shared recorder, whether or not a panicking thread held it.
    pub fn lock(recorder: &Mutex<Self>) -> std::sync::MutexGuard<'_, Self> {
        recorder.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Dataplane for RecordingDataplane {
    fn apply(&mut self, _: &str, _: &VirtualService) -> Result<(), DataplaneError> {
        Ok(())
    }

    fn remove(&mut self, _: &str) -> Result<(), DataplaneError> {
        Ok(())
    }

    fn set_weight_fast(
        &mut self,
        service: &str,
        addr: IpAddr,
        port: u16,
        weight: u32,
    ) -> Result<(), DataplaneError> {
        self.writes.push(Write {
            service: service.to_owned(),
            addr,
            port,
            weight,
            at: Instant::now(),
        });
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DataplaneError> {
        self.flushes.push(self.writes.len());
        Ok(())
    }
}
