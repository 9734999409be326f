//! One request: what it asks of the backend and the reply it gets. Auth
//! grants are checked here, before the backend sees a join or an update.

use tracing::debug;

use super::Session;
use crate::backend::JoinArgs;
use crate::protocol::{
    event, filters, reply, ErrorCode, JoinRequest, MessageType, ProtocolError, Request, RequestId,
};

impl Session {
    /// Carries out one request and queues its reply; `Err` is answered by
    /// the caller.
    pub(super) async fn dispatch(
        &mut self,
        request: Request<'_>,
        id: Option<&RequestId>,
    ) -> Result<(), ProtocolError> {
        let backend = self.node.backend.clone();
        match request {
            Request::Ping => {
                let _ = self.outbox.reply(MessageType::Pong, reply::pong(id));
            }
            Request::Join(join) => self.join(join, id).await?,
            Request::Leave => {
                let member = self.member()?.clone();
                backend.leave(&member).await?;
                self.member = None;
                let _ = self.outbox.reply(MessageType::Ok, reply::ok(id));
            }
            Request::Signal { to, payload } => {
                let member = self.member()?;
                backend
                    .signal(member, &to, event::signal(&member.peer, payload))
                    .await?;
                if id.is_some() {
                    let _ = self.outbox.reply(MessageType::Ok, reply::ok(id));
                }
            }
            Request::Broadcast { payload } => {
                let member = self.member()?;
                backend
                    .broadcast(member, event::broadcast(&member.peer, payload))
                    .await?;
                if id.is_some() {
                    let _ = self.outbox.reply(MessageType::Ok, reply::ok(id));
                }
            }
            Request::Discover { filters } => {
                let peers = backend.peers(self.member()?).await?;
                let peers = filters::select(peers, &filters);
                let _ = self
                    .outbox
                    .reply(MessageType::Peers, reply::peers(id, &peers));
            }
            Request::SetState { patch, if_version } => {
                let member = self.member()?;
                // The `state` event of this patch may reach the outbox before
                // the backend's answer (it always does on the embedded node;
                // on Redis it races the script's reply): it waits behind the
                // `ok`, so the order is the same on every backend.
                self.outbox.hold_events();
                let result = backend.set_state(member, &patch, if_version).await;
                if let Ok(version) = result {
                    let _ = self
                        .outbox
                        .reply(MessageType::Ok, reply::ok_version(id, version));
                }
                let _ = self.outbox.release();
                result?;
            }
            Request::Update { role, metadata } => {
                if let Some(claims) = &self.claims {
                    claims.authorize_role(role.as_deref())?;
                }
                backend.update(self.member()?, role, metadata).await?;
                let _ = self.outbox.reply(MessageType::Ok, reply::ok(id));
            }
        }
        Ok(())
    }

    /// A `join`: the token's grant first (also for resumes: the peer id is
    /// pinned to `sub`, so a resume token of another peer cannot take its
    /// session), then the backend; events are held until `joined` is queued.
    async fn join(
        &mut self,
        mut join: JoinRequest,
        id: Option<&RequestId>,
    ) -> Result<(), ProtocolError> {
        if self.member.is_some() {
            return Err(ProtocolError::new(
                ErrorCode::AlreadyJoined,
                "this connection is in a room already; leave it first",
            ));
        }
        if let Some(claims) = &self.claims {
            let leeway = self.node.config.auth.leeway_secs;
            claims.authorize_join(&mut join, crate::auth::unix_now(), leeway)?;
        }
        self.outbox.hold(0);
        let outcome = match self
            .node
            .backend
            .join(JoinArgs {
                request: &join,
                outbox: self.outbox.clone(),
                // With auth, `authorize_join` pinned the peer id to the
                // token's subject: the joiner is that peer.
                takeover: self.claims.is_some(),
            })
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                self.outbox.discard_held();
                return Err(e);
            }
        };
        let ice = self.node.ice_servers(&outcome.me.peer);
        let text = reply::joined(
            id,
            &reply::Joined {
                ty: MessageType::Joined,
                room: &outcome.member.room,
                peer: &outcome.member.peer,
                session: &outcome.session,
                peers: &outcome.peers,
                state: &outcome.state,
                ice_servers: &ice,
                recovered: outcome.recovered,
            },
        );
        let _ = self.outbox.reply(MessageType::Joined, text);
        let _ = self.outbox.release();
        debug!(conn = self.conn, room = %outcome.member.room, peer = %outcome.member.peer,
            resumed = outcome.recovered.is_some(), "joined");
        self.member = Some(outcome.member);

        Ok(())
    }
}
