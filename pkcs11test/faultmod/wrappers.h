/*
 * wrappers.h: the plain wrappers of faultmod.c, one per PKCS#11 v2.40
 * function. Generated from pkcs11f.h (the argument lists are copied from it);
 * the functions with special behaviour (C_Initialize, C_Finalize,
 * C_GetFunctionList, C_GetSlotList, C_GetTokenInfo) are written by hand in
 * faultmod.c. Each wrapper runs the fault hooks for its token (found from the
 * slot ID or the session handle) and then calls the real module.
 */

static CK_RV w_C_GetInfo(CK_INFO_PTR pInfo)
{
	CK_RV rv = pre_module("C_GetInfo");
	if (rv != CKR_OK)
		return rv;
	return real->C_GetInfo(pInfo);
}

static CK_RV w_C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	CK_RV rv = pre_slot("C_GetSlotInfo", slotID);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetSlotInfo(slotID, pInfo);
}

static CK_RV w_C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount)
{
	CK_RV rv = pre_slot("C_GetMechanismList", slotID);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetMechanismList(slotID, pMechanismList, pulCount);
}

static CK_RV w_C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	CK_RV rv = pre_slot("C_GetMechanismInfo", slotID);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetMechanismInfo(slotID, type, pInfo);
}

static CK_RV w_C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
	CK_RV rv = pre_slot("C_InitToken", slotID);
	if (rv != CKR_OK)
		return rv;
	return real->C_InitToken(slotID, pPin, ulPinLen, pLabel);
}

static CK_RV w_C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	CK_RV rv = pre_session("C_InitPIN", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_InitPIN(hSession, pPin, ulPinLen);
}

static CK_RV w_C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
	CK_RV rv = pre_session("C_SetPIN", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SetPIN(hSession, pOldPin, ulOldLen, pNewPin, ulNewLen);
}

static CK_RV w_C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
	CK_RV rv = pre_slot("C_OpenSession", slotID);
	if (rv != CKR_OK)
		return rv;
	return real->C_OpenSession(slotID, flags, pApplication, Notify, phSession);
}

static CK_RV w_C_CloseSession(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = pre_session("C_CloseSession", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_CloseSession(hSession);
}

static CK_RV w_C_CloseAllSessions(CK_SLOT_ID slotID)
{
	CK_RV rv = pre_slot("C_CloseAllSessions", slotID);
	if (rv != CKR_OK)
		return rv;
	return real->C_CloseAllSessions(slotID);
}

static CK_RV w_C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	CK_RV rv = pre_session("C_GetSessionInfo", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetSessionInfo(hSession, pInfo);
}

static CK_RV w_C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG_PTR pulOperationStateLen)
{
	CK_RV rv = pre_session("C_GetOperationState", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetOperationState(hSession, pOperationState, pulOperationStateLen);
}

static CK_RV w_C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey)
{
	CK_RV rv = pre_session("C_SetOperationState", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SetOperationState(hSession, pOperationState, ulOperationStateLen, hEncryptionKey, hAuthenticationKey);
}

static CK_RV w_C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	CK_RV rv = pre_session("C_Login", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Login(hSession, userType, pPin, ulPinLen);
}

static CK_RV w_C_Logout(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = pre_session("C_Logout", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Logout(hSession);
}

static CK_RV w_C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phObject)
{
	CK_RV rv = pre_session("C_CreateObject", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_CreateObject(hSession, pTemplate, ulCount, phObject);
}

static CK_RV w_C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
	CK_RV rv = pre_session("C_CopyObject", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_CopyObject(hSession, hObject, pTemplate, ulCount, phNewObject);
}

static CK_RV w_C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
	CK_RV rv = pre_session("C_DestroyObject", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DestroyObject(hSession, hObject);
}

static CK_RV w_C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
	CK_RV rv = pre_session("C_GetObjectSize", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetObjectSize(hSession, hObject, pulSize);
}

static CK_RV w_C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CK_RV rv = pre_session("C_GetAttributeValue", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetAttributeValue(hSession, hObject, pTemplate, ulCount);
}

static CK_RV w_C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CK_RV rv = pre_session("C_SetAttributeValue", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SetAttributeValue(hSession, hObject, pTemplate, ulCount);
}

static CK_RV w_C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CK_RV rv = pre_session("C_FindObjectsInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_FindObjectsInit(hSession, pTemplate, ulCount);
}

static CK_RV w_C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	CK_RV rv = pre_session("C_FindObjects", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_FindObjects(hSession, phObject, ulMaxObjectCount, pulObjectCount);
}

static CK_RV w_C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = pre_session("C_FindObjectsFinal", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_FindObjectsFinal(hSession);
}

static CK_RV w_C_EncryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_EncryptInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_EncryptInit(hSession, pMechanism, hKey);
}

static CK_RV w_C_Encrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen)
{
	CK_RV rv = pre_session("C_Encrypt", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Encrypt(hSession, pData, ulDataLen, pEncryptedData, pulEncryptedDataLen);
}

static CK_RV w_C_EncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	CK_RV rv = pre_session("C_EncryptUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_EncryptUpdate(hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen);
}

static CK_RV w_C_EncryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart, CK_ULONG_PTR pulLastEncryptedPartLen)
{
	CK_RV rv = pre_session("C_EncryptFinal", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_EncryptFinal(hSession, pLastEncryptedPart, pulLastEncryptedPartLen);
}

static CK_RV w_C_DecryptInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_DecryptInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DecryptInit(hSession, pMechanism, hKey);
}

static CK_RV w_C_Decrypt(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
	CK_RV rv = pre_session("C_Decrypt", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Decrypt(hSession, pEncryptedData, ulEncryptedDataLen, pData, pulDataLen);
}

static CK_RV w_C_DecryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	CK_RV rv = pre_session("C_DecryptUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DecryptUpdate(hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen);
}

static CK_RV w_C_DecryptFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen)
{
	CK_RV rv = pre_session("C_DecryptFinal", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DecryptFinal(hSession, pLastPart, pulLastPartLen);
}

static CK_RV w_C_DigestInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism)
{
	CK_RV rv = pre_session("C_DigestInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DigestInit(hSession, pMechanism);
}

static CK_RV w_C_Digest(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	CK_RV rv = pre_session("C_Digest", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Digest(hSession, pData, ulDataLen, pDigest, pulDigestLen);
}

static CK_RV w_C_DigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	CK_RV rv = pre_session("C_DigestUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DigestUpdate(hSession, pPart, ulPartLen);
}

static CK_RV w_C_DigestKey(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_DigestKey", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DigestKey(hSession, hKey);
}

static CK_RV w_C_DigestFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen)
{
	CK_RV rv = pre_session("C_DigestFinal", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DigestFinal(hSession, pDigest, pulDigestLen);
}

static CK_RV w_C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_SignInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignInit(hSession, pMechanism, hKey);
}

static CK_RV w_C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	CK_RV rv = pre_session("C_Sign", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Sign(hSession, pData, ulDataLen, pSignature, pulSignatureLen);
}

static CK_RV w_C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	CK_RV rv = pre_session("C_SignUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignUpdate(hSession, pPart, ulPartLen);
}

static CK_RV w_C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	CK_RV rv = pre_session("C_SignFinal", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignFinal(hSession, pSignature, pulSignatureLen);
}

static CK_RV w_C_SignRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_SignRecoverInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignRecoverInit(hSession, pMechanism, hKey);
}

static CK_RV w_C_SignRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	CK_RV rv = pre_session("C_SignRecover", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignRecover(hSession, pData, ulDataLen, pSignature, pulSignatureLen);
}

static CK_RV w_C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_VerifyInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_VerifyInit(hSession, pMechanism, hKey);
}

static CK_RV w_C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	CK_RV rv = pre_session("C_Verify", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_Verify(hSession, pData, ulDataLen, pSignature, ulSignatureLen);
}

static CK_RV w_C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	CK_RV rv = pre_session("C_VerifyUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_VerifyUpdate(hSession, pPart, ulPartLen);
}

static CK_RV w_C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	CK_RV rv = pre_session("C_VerifyFinal", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_VerifyFinal(hSession, pSignature, ulSignatureLen);
}

static CK_RV w_C_VerifyRecoverInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	CK_RV rv = pre_session("C_VerifyRecoverInit", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_VerifyRecoverInit(hSession, pMechanism, hKey);
}

static CK_RV w_C_VerifyRecover(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen)
{
	CK_RV rv = pre_session("C_VerifyRecover", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_VerifyRecover(hSession, pSignature, ulSignatureLen, pData, pulDataLen);
}

static CK_RV w_C_DigestEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	CK_RV rv = pre_session("C_DigestEncryptUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DigestEncryptUpdate(hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen);
}

static CK_RV w_C_DecryptDigestUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	CK_RV rv = pre_session("C_DecryptDigestUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DecryptDigestUpdate(hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen);
}

static CK_RV w_C_SignEncryptUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen)
{
	CK_RV rv = pre_session("C_SignEncryptUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SignEncryptUpdate(hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen);
}

static CK_RV w_C_DecryptVerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen)
{
	CK_RV rv = pre_session("C_DecryptVerifyUpdate", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DecryptVerifyUpdate(hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen);
}

static CK_RV w_C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv = pre_session("C_GenerateKey", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GenerateKey(hSession, pMechanism, pTemplate, ulCount, phKey);
}

static CK_RV w_C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	CK_RV rv = pre_session("C_GenerateKeyPair", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GenerateKeyPair(hSession, pMechanism, pPublicKeyTemplate, ulPublicKeyAttributeCount, pPrivateKeyTemplate, ulPrivateKeyAttributeCount, phPublicKey, phPrivateKey);
}

static CK_RV w_C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
	CK_RV rv = pre_session("C_WrapKey", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_WrapKey(hSession, pMechanism, hWrappingKey, hKey, pWrappedKey, pulWrappedKeyLen);
}

static CK_RV w_C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv = pre_session("C_UnwrapKey", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_UnwrapKey(hSession, pMechanism, hUnwrappingKey, pWrappedKey, ulWrappedKeyLen, pTemplate, ulAttributeCount, phKey);
}

static CK_RV w_C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv = pre_session("C_DeriveKey", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_DeriveKey(hSession, pMechanism, hBaseKey, pTemplate, ulAttributeCount, phKey);
}

static CK_RV w_C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
	CK_RV rv = pre_session("C_SeedRandom", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_SeedRandom(hSession, pSeed, ulSeedLen);
}

static CK_RV w_C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen)
{
	CK_RV rv = pre_session("C_GenerateRandom", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GenerateRandom(hSession, RandomData, ulRandomLen);
}

static CK_RV w_C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = pre_session("C_GetFunctionStatus", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_GetFunctionStatus(hSession);
}

static CK_RV w_C_CancelFunction(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = pre_session("C_CancelFunction", hSession);
	if (rv != CKR_OK)
		return rv;
	return real->C_CancelFunction(hSession);
}

static CK_RV w_C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pRserved)
{
	CK_RV rv = pre_module("C_WaitForSlotEvent");
	if (rv != CKR_OK)
		return rv;
	return real->C_WaitForSlotEvent(flags, pSlot, pRserved);
}

static void fill_wrappers(CK_FUNCTION_LIST *l)
{
	l->C_GetInfo = w_C_GetInfo;
	l->C_GetSlotInfo = w_C_GetSlotInfo;
	l->C_GetMechanismList = w_C_GetMechanismList;
	l->C_GetMechanismInfo = w_C_GetMechanismInfo;
	l->C_InitToken = w_C_InitToken;
	l->C_InitPIN = w_C_InitPIN;
	l->C_SetPIN = w_C_SetPIN;
	l->C_OpenSession = w_C_OpenSession;
	l->C_CloseSession = w_C_CloseSession;
	l->C_CloseAllSessions = w_C_CloseAllSessions;
	l->C_GetSessionInfo = w_C_GetSessionInfo;
	l->C_GetOperationState = w_C_GetOperationState;
	l->C_SetOperationState = w_C_SetOperationState;
	l->C_Login = w_C_Login;
	l->C_Logout = w_C_Logout;
	l->C_CreateObject = w_C_CreateObject;
	l->C_CopyObject = w_C_CopyObject;
	l->C_DestroyObject = w_C_DestroyObject;
	l->C_GetObjectSize = w_C_GetObjectSize;
	l->C_GetAttributeValue = w_C_GetAttributeValue;
	l->C_SetAttributeValue = w_C_SetAttributeValue;
	l->C_FindObjectsInit = w_C_FindObjectsInit;
	l->C_FindObjects = w_C_FindObjects;
	l->C_FindObjectsFinal = w_C_FindObjectsFinal;
	l->C_EncryptInit = w_C_EncryptInit;
	l->C_Encrypt = w_C_Encrypt;
	l->C_EncryptUpdate = w_C_EncryptUpdate;
	l->C_EncryptFinal = w_C_EncryptFinal;
	l->C_DecryptInit = w_C_DecryptInit;
	l->C_Decrypt = w_C_Decrypt;
	l->C_DecryptUpdate = w_C_DecryptUpdate;
	l->C_DecryptFinal = w_C_DecryptFinal;
	l->C_DigestInit = w_C_DigestInit;
	l->C_Digest = w_C_Digest;
	l->C_DigestUpdate = w_C_DigestUpdate;
	l->C_DigestKey = w_C_DigestKey;
	l->C_DigestFinal = w_C_DigestFinal;
	l->C_SignInit = w_C_SignInit;
	l->C_Sign = w_C_Sign;
	l->C_SignUpdate = w_C_SignUpdate;
	l->C_SignFinal = w_C_SignFinal;
	l->C_SignRecoverInit = w_C_SignRecoverInit;
	l->C_SignRecover = w_C_SignRecover;
	l->C_VerifyInit = w_C_VerifyInit;
	l->C_Verify = w_C_Verify;
	l->C_VerifyUpdate = w_C_VerifyUpdate;
	l->C_VerifyFinal = w_C_VerifyFinal;
	l->C_VerifyRecoverInit = w_C_VerifyRecoverInit;
	l->C_VerifyRecover = w_C_VerifyRecover;
	l->C_DigestEncryptUpdate = w_C_DigestEncryptUpdate;
	l->C_DecryptDigestUpdate = w_C_DecryptDigestUpdate;
	l->C_SignEncryptUpdate = w_C_SignEncryptUpdate;
	l->C_DecryptVerifyUpdate = w_C_DecryptVerifyUpdate;
	l->C_GenerateKey = w_C_GenerateKey;
	l->C_GenerateKeyPair = w_C_GenerateKeyPair;
	l->C_WrapKey = w_C_WrapKey;
	l->C_UnwrapKey = w_C_UnwrapKey;
	l->C_DeriveKey = w_C_DeriveKey;
	l->C_SeedRandom = w_C_SeedRandom;
	l->C_GenerateRandom = w_C_GenerateRandom;
	l->C_GetFunctionStatus = w_C_GetFunctionStatus;
	l->C_CancelFunction = w_C_CancelFunction;
	l->C_WaitForSlotEvent = w_C_WaitForSlotEvent;
}
