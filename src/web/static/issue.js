// The issuance page's script. It holds the issuance token and the share URL in memory only (never
// in the URL, a cookie or storage), sends the session's CSRF token on every POST, and forgets
// everything when the page is left.
(function () {
  "use strict";

  var root = document.getElementById("issue");
  var button = document.getElementById("retrieve");
  if (!root || !button) {
    return;
  }
  var requestId = root.getAttribute("data-request-id");
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var statusLine = document.getElementById("status");
  var errorLine = document.getElementById("error");
  var leftLine = document.getElementById("left");
  var codeForm = document.getElementById("code-form");
  var codeInput = document.getElementById("code");
  var codeHint = document.getElementById("code-hint");
  var resend = document.getElementById("resend");
  var result = document.getElementById("result");
  var urlField = document.getElementById("share-url");
  var openLink = document.getElementById("open");
  var copy = document.getElementById("copy");
  var resultLeft = document.getElementById("result-left");
  var challengeId = null;

  function say(text) {
    statusLine.textContent = text;
  }

  function fail(text) {
    say("");
    errorLine.textContent = text;
    errorLine.setAttribute("tabindex", "-1");
    errorLine.focus();
  }

  function post(path, body) {
    return postTo("/api/requests/" + requestId + path, body);
  }

  function postTo(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      referrerPolicy: "no-referrer",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (response.ok) {
          return data;
        }
        // The server's own words first: a 429 may say "wait 52 seconds before another code".
        var message = data && data.error && data.error.message;
        if (response.status === 401) {
          message = "Your sign-in has expired. Reload the page to sign in again.";
        } else if (response.status === 429 && !message) {
          var wait = response.headers.get("Retry-After");
          message = "Too many attempts. Try again in " + (wait || "a few") + " seconds.";
        }
        throw new Error(message || "Something went wrong. Try again in a minute.");
      });
    }, function () {
      throw new Error("Passkey did not answer. Check your connection and try again.");
    });
  }

  function plural(n, one, many) {
    return n === 1 ? one : many;
  }

  function show(share) {
    var setup = document.getElementById("totp-setup");
    if (setup) {
      setup.hidden = true;
    }
    codeForm.hidden = true;
    button.hidden = true;
    urlField.value = share.share_url;
    openLink.href = share.share_url;
    var left = share.retrievals_left + " of " + share.max + " " + plural(share.max, "retrieval", "retrievals") + " left.";
    resultLeft.textContent = left;
    leftLine.textContent = left;
    result.hidden = false;
    say("");
    result.focus();
  }

  function challenge(started) {
    challengeId = started.challenge_id;
    var where = String(started.channel).toUpperCase() === "TOTP"
      ? "Enter the 6-digit code from your authenticator app."
      : "Enter the 6-digit code sent to " + (started.destination_hint || "your phone") + ".";
    // Said once, next to the field (which it describes); the status line stays quiet.
    codeHint.textContent = where;
    codeForm.hidden = false;
    button.hidden = true;
    say("");
    codeInput.focus();
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    errorLine.textContent = "";
    say("Getting your link…");
    // The token lives in this closure only; it is used once, at once.
    post("/issuance-token")
      .then(function (minted) {
        return post("/issue", { token: minted.token });
      })
      .then(function (answer) {
        if (answer.challenge_id) {
          challenge(answer);
        } else {
          show(answer);
        }
      })
      .catch(function (e) {
        fail(e.message);
      })
      .then(function () {
        button.disabled = false;
      });
  });

  codeForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var code = codeInput.value.trim();
    if (!/^[0-9]{6}$/.test(code)) {
      fail("The code is 6 digits.");
      codeInput.focus();
      return;
    }
    errorLine.textContent = "";
    say("Checking the code…");
    post("/issue/verify", { challenge_id: challengeId, code: code })
      .then(show)
      .catch(function (e) {
        codeInput.value = "";
        fail(e.message);
      });
  });

  if (resend) {
    resend.addEventListener("click", function () {
      errorLine.textContent = "";
      post("/issue/resend", { challenge_id: challengeId })
        .then(challenge)
        .catch(function (e) { fail(e.message); });
    });
  }

  copy.addEventListener("click", function () {
    var done = function () { say("Copied. The link opens once."); };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(urlField.value).then(done, function () {
        urlField.select();
        say("Select and copy the link yourself (Ctrl+C).");
      });
    } else {
      urlField.select();
      say("Select and copy the link yourself (Ctrl+C).");
    }
  });

  // Authenticator app enrollment: proof first (a code texted to the number on file, or the
  // admin's invitation), then the key is shown once, then confirmed with a first code.
  var totpStart = document.getElementById("totp-start");
  if (totpStart) {
    var totpEnroll = document.getElementById("totp-enroll");
    var totpQr = document.getElementById("totp-qr");
    var totpKey = document.getElementById("totp-key");
    var totpForm = document.getElementById("totp-form");
    var totpCode = document.getElementById("totp-code");
    var proofForm = document.getElementById("totp-proof-form");
    var proofCode = document.getElementById("totp-proof-code");
    var proofId = null;
    var showKey = function (enrollment) {
      totpQr.src = enrollment.qr;
      totpKey.value = enrollment.key;
      totpEnroll.hidden = false;
      totpStart.hidden = true;
      if (proofForm) {
        proofForm.hidden = true;
      }
      say("Scan the QR code, then type the app's first code.");
      totpCode.focus();
    };
    totpStart.addEventListener("click", function () {
      errorLine.textContent = "";
      if (totpStart.getAttribute("data-proof") === "invitation") {
        postTo("/api/totp/enroll", { invitation: true })
          .then(showKey)
          .catch(function (e) { fail(e.message); });
        return;
      }
      postTo("/api/totp/proof", { change: "ENROLL" })
        .then(function (proof) {
          proofId = proof.proof_id;
          proofForm.hidden = false;
          say("We texted you a code: type it to continue.");
          proofCode.focus();
        })
        .catch(function (e) { fail(e.message); });
    });
    if (proofForm) {
      proofForm.addEventListener("submit", function (event) {
        event.preventDefault();
        errorLine.textContent = "";
        postTo("/api/totp/enroll", { proof_id: proofId, code: proofCode.value.trim() })
          .then(function (enrollment) {
            proofCode.value = "";
            showKey(enrollment);
          })
          .catch(function (e) {
            proofCode.value = "";
            fail(e.message);
          });
      });
    }
    totpForm.addEventListener("submit", function (event) {
      event.preventDefault();
      errorLine.textContent = "";
      postTo("/api/totp/confirm", { code: totpCode.value.trim() })
        .then(function () {
          totpQr.removeAttribute("src");
          totpKey.value = "";
          document.getElementById("totp-setup").hidden = true;
          say("Your authenticator app is set up. Its codes work from now on.");
          button.focus();
        })
        .catch(function (e) {
          totpCode.value = "";
          fail(e.message);
        });
    });
  }

  // Leaving the page drops the link: nothing survives in the DOM or in memory.
  window.addEventListener("pagehide", function () {
    urlField.value = "";
    openLink.href = "#";
    var key = document.getElementById("totp-key");
    if (key) {
      key.value = "";
    }
    result.hidden = true;
    challengeId = null;
  });
})();
