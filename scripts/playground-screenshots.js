// Takes the screenshots in docs/images/ by driving the Microsoft 365 Agents Playground's web page
// with headless Chromium. Manual only (never run by CI); docs/PLAYGROUND.md says how to set it up:
// `cargo run` with a fresh data directory, the Playground started with
// `.m365agentsplayground.approver.yml` (Bob is the current user), and, in some directory outside
// the repository, `npm install playwright-core` plus Debian's `chromium`. Then:
//
//   NODE_PATH=/that/dir/node_modules node scripts/playground-screenshots.js [OUT_DIR]
//
// The story: Bob's page opens (his 1:1 chat with Passkey now exists); Alice asks for db-prod in the
// group chat (a "Custom activity" sent as her, since the Playground's own user is Bob: the request
// form's Submit, an invoke, because a request typed in a group is answered only in the person's
// 1:1 chat, which Alice does not have here — docs/PLAYGROUND.md, step 4); Bob's
// personal chat shows the approval card; Bob writes a comment and taps Approve; the card becomes
// the decided card. The Playground keeps a chat's history only while its page stays open, so it
// all happens in one page.
//
// With PLAYGROUND_STORY=requester (a fresh data directory again, and the Playground started with
// the default `.m365agentsplayground.yml`: Alice is the current user) it tells the requester's
// side instead and writes playground-waiting-card.png and playground-approved-retrieve.png
// (docs/PLAYGROUND.md, "The requester's side").
const { chromium } = require('playwright-core');

const PLAYGROUND = process.env.PLAYGROUND_URL || 'http://localhost:56150';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const OUT = process.argv[2] || 'docs/images';
const TENANT = '7f3c2a10-5e1b-4c8a-9d2e-0a1b2c3d4e5f'; // src/demo/dataset.json
const REQUEST = { record: 'db-prod', duration: '2h', justification: 'INC-4411 failover test' };

// Sends `activity` through the Playground's "Mock an Activity → Custom activity" editor.
async function sendCustomActivity(page, activity) {
  await page.getByText('Mock an Activity').click();
  await page.getByRole('menuitem', { name: 'Custom activity' }).click();
  await page.locator('.monaco-editor').first().waitFor();
  await page.locator('.monaco-editor').first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  // One line: the editor would auto-indent a pretty-printed one into invalid JSON.
  await page.keyboard.insertText(JSON.stringify(activity));
  await page.getByRole('button', { name: 'Send activity' }).click();
}

// A message typed by Bob in the chat Passkey keeps as his 1:1 chat. The Playground has one real
// person and knows only its own conversations (it answers 404 to a message for any other), so in
// the requester's story Bob's "1:1 chat" is the Playground's group chat, marked personal: his
// approval card shows in the Group Chat pane.
function fromBob(text) {
  return {
    type: 'message',
    id: `bob-${Date.now()}`,
    timestamp: new Date().toISOString(),
    channelId: 'msteams',
    serviceUrl: `${PLAYGROUND}/_connector`,
    text,
    recipient: { id: '00000000-0000-0000-0000-00000000000011', name: 'Passkey' },
    conversation: { id: '__GROUP_CHAT_ID__', conversationType: 'personal', tenantId: TENANT },
    from: {
      id: 'user-id-bob', name: 'Bob DBA Lead', aadObjectId: 'b0b00000-0000-4000-8000-000000000002',
    },
    channelData: { tenant: { id: TENANT } },
  };
}

// The requester's story (`PLAYGROUND_STORY=requester`, the Playground started with the default
// `.m365agentsplayground.yml`: Alice is the current user). Bob says hello first, so Passkey has a
// chat to send his approval card to; Alice types her request and her status card says who was
// asked; Bob approves; Alice's chat gets the approved card with Retrieve.
async function requesterStory(page) {
  await sendCustomActivity(page, fromBob('help'));
  await page.waitForTimeout(3000);
  await page.getByText('Personal Chat', { exact: true }).click();
  const box = page.locator('[data-lexical-editor="true"]');
  await box.click();
  await page.keyboard.type(`request ${REQUEST.record} ${REQUEST.duration} because ${REQUEST.justification}`);
  await page.keyboard.press('Enter');
  await page.getByText('Asked: Bob DBA Lead', { exact: false }).last().waitFor({ timeout: 15000 });
  await page.waitForTimeout(1500);
  await page.getByText('Asked: Bob DBA Lead', { exact: false }).last().scrollIntoViewIfNeeded();
  await page.screenshot({ path: `${OUT}/playground-waiting-card.png` });

  await sendCustomActivity(page, fromBob('approve 1 OK for the failover test'));
  await page.getByText('Personal Chat', { exact: true }).click();
  await page.getByRole('link', { name: 'Retrieve' }).last()
    .or(page.getByRole('button', { name: 'Retrieve' }).last())
    .waitFor({ timeout: 15000 });
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${OUT}/playground-approved-retrieve.png` });
}

async function main() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
    if (process.env.PLAYGROUND_STORY === 'requester') {
      await page.goto(PLAYGROUND, { waitUntil: 'domcontentloaded' });
      await page.getByText('Personal Chat', { exact: true }).waitFor();
      await page.waitForTimeout(3000); // installationUpdate, conversationUpdate, the welcome
      await requesterStory(page);
      return;
    }
    await page.goto(PLAYGROUND, { waitUntil: 'domcontentloaded' });
    await page.getByText('Personal Chat', { exact: true }).waitFor();
    await page.waitForTimeout(3000); // installationUpdate, conversationUpdate, the welcome

    // Alice writes in the group chat.
    await page.getByText('Group Chat', { exact: true }).click();
    await page.waitForTimeout(1500);
    await page.getByText('Mock an Activity').click();
    await page.getByRole('menuitem', { name: 'Custom activity' }).click();
    await page.locator('.monaco-editor').first().waitFor();
    const activity = {
      type: 'invoke',
      name: 'adaptiveCard/action',
      id: `alice-${Date.now()}`,
      timestamp: new Date().toISOString(),
      channelId: 'msteams',
      serviceUrl: `${PLAYGROUND}/_connector`,
      recipient: { id: '00000000-0000-0000-0000-00000000000011', name: 'Passkey' },
      conversation: {
        id: '__GROUP_CHAT_ID__', isGroup: true, conversationType: 'groupChat', tenantId: TENANT,
      },
      from: {
        id: 'user-id-alice', name: 'Alice Requester',
        aadObjectId: 'a11ce000-0000-4000-8000-000000000001',
      },
      value: {
        action: { type: 'Action.Execute', verb: 'submitRequest', data: REQUEST },
        trigger: 'manual',
      },
      channelData: { tenant: { id: TENANT } },
    };
    await page.locator('.monaco-editor').first().click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    // One line: the editor would auto-indent a pretty-printed one into invalid JSON.
    await page.keyboard.insertText(JSON.stringify(activity));
    await page.getByRole('button', { name: 'Send activity' }).click();
    await page.waitForTimeout(4000);
    await page.screenshot({ path: `${OUT}/playground-group-request.png` });

    // Bob's approval card.
    await page.getByText('Personal Chat', { exact: true }).click();
    const comment = page.getByPlaceholder('Why you approve or deny').last();
    await comment.waitFor({ timeout: 15000 }).catch(async (e) => { await page.screenshot({ path: `${OUT}/failed.png` }); throw e; });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: `${OUT}/playground-approval-card.png` });

    // Typed, not filled: the card's text box only reports keystrokes to the action's data.
    await comment.click();
    await page.keyboard.type('OK for the failover test');
    await page.getByRole('button', { name: 'Approve' }).last().click();
    await page.getByText('Decided by').waitFor();
    await page.waitForTimeout(1500);
    await page.screenshot({ path: `${OUT}/playground-decided-card.png` });
    await channelApproval(page);
  } finally {
    await browser.close();
  }
}

// #18.7, a separate final step: jenkins-deploy's approver group (sre-oncall) gets its approval
// cards in the Playground's team channel "Announcements" too. Once the channel is opened (Passkey
// hears of it then), it is named with the shell command (`PASSKEY_BIN`, default target/debug/passkey, run with this process's environment: give it
// the same PASSKEY_DATA_DIR as `cargo run`), then Alice asks for jenkins-deploy in the channel (a
// custom activity, as in step 4) and Passkey posts the approval card there: no buttons on the shared
// copy, the group named as who decides. The demo directory lists no group members, so no one's
// view refreshes to Approve/Deny in the Playground (docs/PLAYGROUND.md).
async function channelApproval(page) {
  const { execFileSync } = require('child_process');
  const passkey = process.env.PASSKEY_BIN || 'target/debug/passkey';
  const CHANNEL = 'channel-announcements-id'; // .m365agentsplayground.approver.yml
  // Opening the channel sends Passkey its conversationUpdate: only then does it know the channel.
  await page.getByText('Announcements', { exact: true }).click();
  await page.waitForTimeout(3000);
  const shown = execFileSync(passkey, ['admin', 'authority', 'show', 'jenkins-deploy']).toString();
  const group = shown.match(/#(\d+) APPROVER — group sre-oncall/);
  if (!group) throw new Error(`no sre-oncall authority on jenkins-deploy:\n${shown}`);
  execFileSync(passkey, ['admin', 'authority', 'channel', group[1], CHANNEL]);
  await page.getByText('Mock an Activity').click();
  await page.getByRole('menuitem', { name: 'Custom activity' }).click();
  await page.locator('.monaco-editor').first().waitFor();
  const activity = {
    type: 'invoke',
    name: 'adaptiveCard/action',
    id: `alice-channel-${Date.now()}`,
    timestamp: new Date().toISOString(),
    channelId: 'msteams',
    serviceUrl: `${PLAYGROUND}/_connector`,
    recipient: { id: '00000000-0000-0000-0000-00000000000011', name: 'Passkey' },
    conversation: { id: CHANNEL, isGroup: true, conversationType: 'channel', tenantId: TENANT },
    from: {
      id: 'user-id-alice', name: 'Alice Requester',
      aadObjectId: 'a11ce000-0000-4000-8000-000000000001',
    },
    value: {
      action: {
        type: 'Action.Execute',
        verb: 'submitRequest',
        data: { record: 'jenkins-deploy', duration: '1h', justification: 'INC-4414 hotfix deploy' },
      },
      trigger: 'manual',
    },
    channelData: { tenant: { id: TENANT }, team: { id: 'team-id' }, channel: { id: CHANNEL } },
  };
  await page.locator('.monaco-editor').first().click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Delete');
  await page.keyboard.insertText(JSON.stringify(activity));
  await page.getByRole('button', { name: 'Send activity' }).click();
  await page.getByText('decide here').last().waitFor({ timeout: 15000 });
  await page.setViewportSize({ width: 1280, height: 960 }); // the whole card, down to who decides
  await page.waitForTimeout(1500);
  await page.screenshot({ path: `${OUT}/playground-channel-approval.png` });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
