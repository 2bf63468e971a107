/* Token selection by URI, and login. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

/* Append "'label' (serial S, slot N)" entries for the error that lists the
 * tokens present. */
static void describe_token(char *buf, size_t size, CK_SLOT_ID slot,
                           const CK_TOKEN_INFO *ti)
{
	char label[33], serial[17], line[96];
	size_t used = strlen(buf);

	p11_trim_copy(label, sizeof(label), ti->label, sizeof(ti->label));
	p11_trim_copy(serial, sizeof(serial), ti->serialNumber, sizeof(ti->serialNumber));
	snprintf(line, sizeof(line), "%s'%s' (serial %s, slot %lu)", used ? ", " : "",
	         label, serial, (unsigned long)slot);
	if (used + strlen(line) + 1 < size)
		strcat(buf, line);
}

int p11_token_select(fv_instance *inst)
{
	struct p11_module *mod = inst->mod;
	P11KitUri *uri = inst->target.uri;
	CK_SLOT_ID want_slot = p11_kit_uri_get_slot_id(uri);
	CK_TOKEN_INFO ti, chosen_ti;
	CK_SLOT_INFO si;
	CK_SLOT_ID slot, chosen = 0, *slots = NULL;
	CK_ULONG count = 0, i;
	char present[1024] = "";
	unsigned int matches = 0;
	CK_RV rv;

	/* Module fields in the URI (library-manufacturer, ...) must match too. */
	if (!p11_kit_uri_match_module_info(uri, &mod->info))
		return P11_ERROR(FV_ERR_NOT_FOUND,
			"%s.uri: its library-* fields do not match module '%s'",
			inst->where, mod->path);

	rv = mod->fns->C_GetSlotList(CK_TRUE, NULL, &count);
	if (rv == CKR_OK && count > 0) {
		slots = calloc(count, sizeof(*slots));
		if (!slots)
			return FV_ERR_NOMEM;
		rv = mod->fns->C_GetSlotList(CK_TRUE, slots, &count);
	}
	if (rv != CKR_OK) {
		free(slots);
		return P11_ERROR(FV_ERR_BACKEND, "module '%s': C_GetSlotList failed: %s",
		                 mod->path, p11_ckr_name(rv));
	}
	memset(&chosen_ti, 0, sizeof(chosen_ti));
	for (i = 0; i < count; i++) {
		slot = slots[i];
		/* Asked each time: URI matching needs the raw fields, and the
		 * flags must be current. */
		rv = mod->fns->C_GetTokenInfo(slot, &ti);
		if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED)
			continue;
		if (rv != CKR_OK) {
			free(slots);
			return P11_ERROR(FV_ERR_BACKEND, "module '%s': C_GetTokenInfo(slot %lu) failed: %s",
			                 mod->path, (unsigned long)slot, p11_ckr_name(rv));
		}
		if (!(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		describe_token(present, sizeof(present), slot, &ti);
		if (want_slot != (CK_SLOT_ID)-1 && want_slot != slot)
			continue;
		rv = mod->fns->C_GetSlotInfo(slot, &si);
		if (rv != CKR_OK) {
			free(slots);
			return P11_ERROR(FV_ERR_BACKEND, "module '%s': C_GetSlotInfo(slot %lu) failed: %s",
			                 mod->path, (unsigned long)slot, p11_ckr_name(rv));
		}
		if (!p11_kit_uri_match_slot_info(uri, &si) ||
		    !p11_kit_uri_match_token_info(uri, &ti))
			continue;
		matches++;
		chosen = slot;
		chosen_ti = ti;
	}
	free(slots);
	if (matches == 0)
		return P11_ERROR(FV_ERR_NOT_FOUND,
			"%s.uri: no token matches; tokens present in '%s': %s; fix token=/serial=/slot-id= in the uri",
			inst->where, mod->path, present[0] ? present : "none (initialize one first)");
	if (matches > 1)
		return P11_ERROR(FV_ERR_BACKEND,
			"%s.uri: %u tokens match; tokens present in '%s': %s; add token= or serial= to the uri to pick one",
			inst->where, matches, mod->path, present);
	inst->slot = chosen;
	inst->token_flags = chosen_ti.flags;
	inst->mod_epoch = p11_module_epoch(mod, NULL);
	p11_trim_copy(inst->token_label, sizeof(inst->token_label), chosen_ti.label,
	              sizeof(chosen_ti.label));
	p11_trim_copy(inst->token_serial, sizeof(inst->token_serial), chosen_ti.serialNumber,
	              sizeof(chosen_ti.serialNumber));
	return FV_OK;
}

const char *p11_token_pin_flags(fv_instance *inst)
{
	static _Thread_local char buf[320];
	CK_TOKEN_INFO ti;

	buf[0] = '\0';
	if (inst->mod->fns->C_GetTokenInfo(inst->slot, &ti) != CKR_OK)
		return buf;
	if (ti.flags & CKF_USER_PIN_LOCKED)
		strcat(buf, "; the token reports CKF_USER_PIN_LOCKED: the user PIN is locked, the security officer must unlock it");
	else if (ti.flags & CKF_USER_PIN_FINAL_TRY)
		strcat(buf, "; the token reports CKF_USER_PIN_FINAL_TRY: one more wrong PIN locks it");
	else if (ti.flags & CKF_USER_PIN_COUNT_LOW)
		strcat(buf, "; the token reports CKF_USER_PIN_COUNT_LOW: wrong PINs were entered recently");
	return buf;
}

static int already_logged_in(fv_instance *inst, CK_SESSION_HANDLE session)
{
	CK_SESSION_INFO info;

	if (inst->mod->fns->C_GetSessionInfo(session, &info) != CKR_OK)
		return 0;
	return info.state == CKS_RO_USER_FUNCTIONS || info.state == CKS_RW_USER_FUNCTIONS;
}

int p11_token_login(fv_instance *inst, CK_SESSION_HANDLE session)
{
	CK_FUNCTION_LIST *f = inst->mod->fns;
	const char *ref = inst->pin_ref ? inst->pin_ref : inst->target.pin_source_ref;
	char purpose[80];
	char *pin = NULL;
	size_t pin_len = 0;
	CK_RV rv;
	int rc;

	if (inst->auth_failed)
		return P11_ERROR(FV_ERR_AUTH,
			"token '%s': the PIN was wrong earlier; not trying again, to avoid locking the token%s",
			inst->token_label, p11_token_pin_flags(inst));
	/* Login state belongs to the application and the token, not to a
	 * session: another instance may have logged in already. */
	if (already_logged_in(inst, session))
		return FV_OK;
	if (!ref) {
		if (inst->token_flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
			rv = f->C_Login(session, CKU_USER, NULL, 0);
			goto check;
		}
		if (!(inst->token_flags & CKF_LOGIN_REQUIRED))
			return FV_OK;
		return P11_ERROR(FV_ERR_CONFIG,
			"%s: token '%s' needs a PIN: set pin (env:NAME, file:PATH or prompt) or pin-source in the uri",
			inst->where, inst->token_label);
	}
	if (inst->token_flags & CKF_USER_PIN_LOCKED)
		return P11_ERROR(FV_ERR_AUTH,
			"token '%s': the user PIN is locked (CKF_USER_PIN_LOCKED); the security officer must unlock it, e.g. pkcs11-tool --init-pin --login --login-type so",
			inst->token_label);

	snprintf(purpose, sizeof(purpose), "PIN for token '%s'", inst->token_label);
	rc = p11_host->secret_resolve(ref, purpose, &pin, &pin_len);
	if (rc != FV_OK)
		return rc;
	rv = f->C_Login(session, CKU_USER, (CK_UTF8CHAR *)pin, (CK_ULONG)pin_len);
	/* Wiped right away: a later re-login resolves the reference again. */
	p11_host->secret_free(pin, pin_len);

check:
	switch (rv) {
	case CKR_OK:
	case CKR_USER_ALREADY_LOGGED_IN:
		if (p11_token_pin_flags(inst)[0])
			P11_LOG(FV_LOG_WARNING, "token '%s'%s", inst->token_label,
			        p11_token_pin_flags(inst));
		return FV_OK;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_INVALID:
		inst->auth_failed = 1;
		return P11_ERROR(FV_ERR_AUTH,
			"token '%s': C_Login failed: %s: wrong PIN; fix the PIN reference (it is not retried, to avoid locking the token)%s",
			inst->token_label, p11_ckr_name(rv), p11_token_pin_flags(inst));
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		inst->auth_failed = 1;
		return P11_ERROR(FV_ERR_AUTH,
			"token '%s': C_Login failed: %s; the security officer must unlock or reset the user PIN%s",
			inst->token_label, p11_ckr_name(rv), p11_token_pin_flags(inst));
	case CKR_USER_PIN_NOT_INITIALIZED:
		return P11_ERROR(FV_ERR_AUTH,
			"token '%s': C_Login failed: %s; set a user PIN first (e.g. pkcs11-tool --init-pin)",
			inst->token_label, p11_ckr_name(rv));
	default:
		return P11_ERROR(FV_ERR_BACKEND, "token '%s': C_Login failed: %s",
		                 inst->token_label, p11_ckr_name(rv));
	}
}
