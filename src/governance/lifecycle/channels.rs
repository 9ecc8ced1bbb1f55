//! Team channels a waiting request's approval card is posted in (#18.7): the channels named for
//! the GROUP authorities of the stage that decides now (`admin authority channel`), with the
//! members' Teams ids, so the card refreshes to a view with Approve and Deny for them alone.

use super::*;
use crate::store::{ApprovalChannel, ConversationRef};

/// The most Teams user ids a card's `refresh.userIds` may list (Teams refreshes for up to 60).
pub const MAX_CHANNEL_REFRESH_USERS: usize = 60;

/// One team channel a request's approval card goes to.
#[derive(Debug, Clone)]
pub struct ChannelRoute {
    pub channel: ApprovalChannel,
    /// The channel's stored address (its service URL came with an activity in that team).
    pub conversation: ConversationRef,
    /// The GROUP authority's principal, as the card names it.
    pub group: String,
    /// The group members' Teams user ids that Passkey knows (the requester left out): their
    /// clients refresh the card to their own view with Approve and Deny.
    pub member_teams_ids: Vec<String>,
}

impl Lifecycle {
    /// The team channels request `request_id`'s approval card goes to now: the channels of the
    /// GROUP authorities in the stage being decided. A request not waiting for approvers, or a
    /// channel the bot has no address for, goes nowhere; a group whose members cannot be listed
    /// still gets the card (its members may tap Refresh for their view).
    pub async fn approval_channels(
        &self,
        request_id: i64,
    ) -> Result<Vec<ChannelRoute>, StoreError> {
        let Some(request) = self.store.request_by_id(request_id).await? else {
            return Ok(Vec::new());
        };
        if request.status != RequestStatus::Pending {
            return Ok(Vec::new());
        }
        let record = self
            .store
            .record_by_id(request.record_id)
            .await?
            .ok_or(StoreError::NotFound("record"))?;
        let requester = self
            .store
            .user_by_id(request.requester_id)
            .await?
            .ok_or(StoreError::NotFound("requester"))?;
        let approvals: Vec<ApprovalFacts> = self
            .store
            .approvals_for_request(request_id)
            .await?
            .iter()
            .filter(|a| a.decision == ApprovalDecision::Approve)
            .map(|a| ApprovalFacts {
                approver_user_id: a.approver_id,
                stage: a.stage,
            })
            .collect();
        let ctx = self
            .context(
                Action::Approve,
                &requester,
                None,
                &record,
                Self::facts_of(&request),
                approvals,
                None,
            )
            .await?;
        let stage = self.current_stage(&ctx);
        let stages = crate::policy::rules::quorum::approvers_by_stage(&ctx, self.engine.policy());
        let mut routes = Vec::new();
        for a in stages.get(&stage).into_iter().flatten() {
            if a.principal_type != PrincipalType::Group {
                continue;
            }
            let Some(channel) = self.store.approval_channel(a.authority_id).await? else {
                continue;
            };
            let Some(conversation) = self.store.conversation(&channel.conversation_id).await?
            else {
                tracing::warn!(
                    authority_id = a.authority_id,
                    "approval channel has no stored address"
                );
                continue;
            };
            let member_teams_ids = self.member_teams_ids(&a.principal, requester.id).await?;
            routes.push(ChannelRoute {
                channel,
                conversation,
                group: a.principal.clone(),
                member_teams_ids,
            });
        }
        Ok(routes)
    }

    /// The Teams user ids of a group's members that Passkey has on record (they have talked to
    /// the bot), except `except_user_id`; a group that cannot be listed gives none.
    async fn member_teams_ids(
        &self,
        group: &str,
        except_user_id: i64,
    ) -> Result<Vec<String>, StoreError> {
        let members = match self.directory.group_members(group).await {
            Ok(Some(members)) => members,
            Ok(None) => return Ok(Vec::new()),
            Err(e) => {
                tracing::warn!(error = %e, "approver group not listed for a channel card");
                return Ok(Vec::new());
            }
        };
        let mut ids = Vec::new();
        for member in members {
            if ids.len() == MAX_CHANNEL_REFRESH_USERS {
                break;
            }
            if let Some(user) = self.store.user_by_aad_object_id(&member.id).await?
                && user.id != except_user_id
                && let Some(teams_id) = user.teams_user_id
                && !ids.contains(&teams_id)
            {
                ids.push(teams_id);
            }
        }
        Ok(ids)
    }
}
