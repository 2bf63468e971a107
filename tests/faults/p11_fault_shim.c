/*
 * A PKCS#11 module that forwards to a real one (FV_FAULT_REAL_MODULE) and
 * can be made to behave like a token that was pulled out: while the file
 * named by FV_FAULT_CONTROL exists, session and token calls fail with
 * CKR_DEVICE_REMOVED / CKR_TOKEN_NOT_PRESENT. When the fault starts, every
 * session of this process on the real module is closed (which also logs the
 * application out), as a real removal would; when the file is gone again
 * the token is "back" with no sessions and no login, and whoever uses it
 * must open sessions and log in again.
 *
 * Only for tests: it lets a fault be injected at an exact moment into a
 * process that keeps its module loaded.
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST real_copy, shim;
static CK_FUNCTION_LIST_PTR real;
static int faulted;

/* True while the fault is on; on its first sight, drop every session. */
static int fault_on(void)
{
	const char *control = getenv("FV_FAULT_CONTROL");
	int on = control && access(control, F_OK) == 0;

	if (on && !faulted) {
		CK_SLOT_ID slots[16];
		CK_ULONG n = 16, i;

		if (real->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK)
			for (i = 0; i < n; i++)
				real->C_CloseAllSessions(slots[i]);
	}
	faulted = on;
	return on;
}

static CK_RV shim_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	return fault_on() ? CKR_TOKEN_NOT_PRESENT : real->C_GetTokenInfo(slot, info);
}

static CK_RV shim_OpenSession(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app,
                              CK_NOTIFY notify, CK_SESSION_HANDLE_PTR session)
{
	return fault_on() ? CKR_TOKEN_NOT_PRESENT
	                  : real->C_OpenSession(slot, flags, app, notify, session);
}

static CK_RV shim_GetSessionInfo(CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info)
{
	return fault_on() ? CKR_DEVICE_REMOVED : real->C_GetSessionInfo(s, info);
}

static CK_RV shim_Login(CK_SESSION_HANDLE s, CK_USER_TYPE type, CK_UTF8CHAR_PTR pin,
                        CK_ULONG len)
{
	return fault_on() ? CKR_DEVICE_REMOVED : real->C_Login(s, type, pin, len);
}

static CK_RV shim_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	return fault_on() ? CKR_DEVICE_REMOVED : real->C_FindObjectsInit(s, t, n);
}

static CK_RV shim_DecryptInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	return fault_on() ? CKR_DEVICE_REMOVED : real->C_DecryptInit(s, m, k);
}

static CK_RV shim_Decrypt(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len,
                          CK_BYTE_PTR out, CK_ULONG_PTR out_len)
{
	return fault_on() ? CKR_DEVICE_REMOVED : real->C_Decrypt(s, in, in_len, out, out_len);
}

/* The one exported symbol (the build hides everything else). */
__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (!real) {
		const char *path = getenv("FV_FAULT_REAL_MODULE");
		CK_RV (*get)(CK_FUNCTION_LIST_PTR_PTR);
		CK_FUNCTION_LIST_PTR fns;
		void *dl;

		if (!path || !(dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
			return CKR_GENERAL_ERROR;
		*(void **)&get = dlsym(dl, "C_GetFunctionList");
		if (!get || get(&fns) != CKR_OK)
			return CKR_GENERAL_ERROR;
		real_copy = *fns;
		real = &real_copy;
		shim = real_copy;
		shim.C_GetFunctionList = C_GetFunctionList;
		shim.C_GetTokenInfo = shim_GetTokenInfo;
		shim.C_OpenSession = shim_OpenSession;
		shim.C_GetSessionInfo = shim_GetSessionInfo;
		shim.C_Login = shim_Login;
		shim.C_FindObjectsInit = shim_FindObjectsInit;
		shim.C_DecryptInit = shim_DecryptInit;
		shim.C_Decrypt = shim_Decrypt;
	}
	*list = &shim;
	return CKR_OK;
}
