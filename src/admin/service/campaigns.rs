//! Campaign control: pause, resume and cancel a campaign (see [`crate::campaigns`]).

use super::{Admin, AdminError, Unavailable};
use crate::campaigns::{CampaignState, Command, ControlError, State};

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
