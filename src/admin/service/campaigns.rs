//! Campaign control: pause, resume and cancel a campaign (see [`crate::campaigns`]).

use super::{Admin, AdminError, Unavailable};
use crate::campaigns::{CampaignState, Command, ControlError, State};
use crate::stats::CampaignStats;

impl Admin {
    /// Applies `command` to campaign `target_id`; every replica follows within a second.
    pub async fn control_campaign(
        &self,
        target_id: i64,
        command: Command,
    ) -> Result<CampaignState, AdminError> {
        let Some(campaigns) = &self.campaigns else {
            return Err(Unavailable::NotConfigured("campaign control needs the running service").into());
        };
        match campaigns.control(target_id, command).await {
            Ok(state) => Ok(CampaignState::of(target_id, state)),
            Err(ControlError::TooMany) => Err(AdminError::Unprocessable(ControlError::TooMany.to_string())),
            Err(ControlError::Redis(err)) => Err(Unavailable::Redis(err).into()),
        }
    }

    /// Fills in `stats`' campaign state and since when.
    pub(super) async fn with_state(&self, stats: &mut CampaignStats) -> Result<(), AdminError> {
        let state = self.campaign_state(stats.target_id).await?;
        stats.state = state.name().to_string();
        stats.state_since = state.since_ms().map(crate::stats::rfc3339);
        Ok(())
    }

    /// Campaign `target_id`'s state (active when campaign control is not offered). Read
    /// from Redis when this process has not read the states yet (the command line).
    pub(super) async fn campaign_state(&self, target_id: i64) -> Result<State, AdminError> {
        let Some(campaigns) = &self.campaigns else {
            return Ok(State::Active);
        };
        if !campaigns.loaded() {
            campaigns.reload().await.map_err(Unavailable::Redis)?;
        }
        Ok(campaigns.state(target_id))
    }
}
