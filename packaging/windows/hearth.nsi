; Hearth's per-user installer for Windows (issue 13): no admin prompt,
; everything under the user's own profile and HKEY_CURRENT_USER.
;
; cmd/hearth-dist (windows.go) builds it with makensis and these defines:
;   VERSION    the release version as git describe says (0.4.0-12-gabc1234)
;   VIVERSION  the same as four numbers for version resources (0.4.0.12)
;   ARCH       amd64 or arm64: the hearth.exe this installer carries
;   EXE        that hearth.exe (already carrying its icon and version resources)
;   ICON       hearth.ico (packaging/icons)
;   OUTFILE    where the installer goes
;   SIZEKB     the installed size in KiB, for Apps & features
; packaging/README.md ("Windows") says what goes where and why.
;
; Reproducible: nothing here reads the clock (no !define /date), and
; SetDateSave off keeps the files' modification times out of the installer.

Unicode true
!if "${ARCH}" == "amd64"
  Target amd64-unicode
!else
  ; Windows on ARM runs x86 programs on every version (x64 ones only from
  ; Windows 11), so the arm64 installer itself is x86; what it installs
  ; is the native arm64 hearth.exe.
  Target x86-unicode
!endif

SetCompressor /SOLID lzma
RequestExecutionLevel user
ManifestDPIAware true
ManifestSupportedOS all
SetDateSave off
AllowSkipFiles off
CRCCheck on

!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Hearth"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"

Name "Hearth"
OutFile "${OUTFILE}"
; The per-user programs folder (what FOLDERID_UserProgramFiles is).
InstallDir "$LOCALAPPDATA\Programs\Hearth"
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
BrandingText "Hearth ${VERSION}"
ShowInstDetails show
ShowUninstDetails show

!include MUI2.nsh
!include LogicLib.nsh
!include x64.nsh

!define MUI_ICON "${ICON}"
!define MUI_UNICON "${ICON}"
!define MUI_ABORTWARNING
; The finish page's checkbox (checked) starts Hearth and opens the
; console. A silent install (/S) shows no pages, so it starts nothing: the
; Run entries start Hearth at the next login.
!define MUI_FINISHPAGE_RUN
!define MUI_FINISHPAGE_RUN_TEXT "Start Hearth and open its console"
!define MUI_FINISHPAGE_RUN_FUNCTION StartHearth

!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

VIProductVersion "${VIVERSION}"
VIFileVersion "${VIVERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductName" "Hearth"
VIAddVersionKey /LANG=${LANG_ENGLISH} "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=${LANG_ENGLISH} "FileDescription" "Hearth installer"
VIAddVersionKey /LANG=${LANG_ENGLISH} "CompanyName" "Hearth"
VIAddVersionKey /LANG=${LANG_ENGLISH} "LegalCopyright" "The Hearth authors"

; StopHearth stops a Hearth running from $INSTDIR and waits until
; hearth.exe can be replaced or removed (up to 10 s). The daemon stops
; through its control API ('hearth service stop'; exit code 4: it was not
; running). The tray has no control API: taskkill without /F asks its
; window to close, and it quits as its Quit item would; asked again while
; hearth.exe is in use, for a tray that was still starting. taskkill
; without /F closes nothing that has no window, such as a daemon.
!macro StopHearth
  nsExec::Exec '"$INSTDIR\hearth.exe" service stop'
  Pop $0
  StrCpy $1 0
  ${Do}
    ClearErrors
    ; Deleting a file that does not exist sets no error.
    Delete "$INSTDIR\hearth.exe"
    ${IfNot} ${Errors}
      ${Break}
    ${EndIf}
    nsExec::Exec 'taskkill /IM hearth.exe'
    Pop $0
    IntOp $1 $1 + 1
    ${If} $1 >= 40
      ${Break}
    ${EndIf}
    Sleep 250
  ${Loop}
!macroend

Function .onInit
!if "${ARCH}" == "arm64"
  ${IfNot} ${IsNativeARM64}
    MessageBox MB_ICONSTOP "This installer is for Windows on ARM; this computer needs the amd64 installer of Hearth." /SD IDOK
    Abort
  ${EndIf}
!else
  ${If} ${IsNativeARM64}
    MessageBox MB_ICONSTOP "This installer is for x64 computers; this one needs the arm64 installer of Hearth." /SD IDOK
    Abort
  ${EndIf}
!endif
FunctionEnd

Section "Hearth"
  SetOutPath "$INSTDIR"
  ; Installing over a running Hearth (an upgrade): stop it first, or
  ; hearth.exe cannot be replaced. Its data dir is never touched.
  ${If} ${FileExists} "$INSTDIR\hearth.exe"
    DetailPrint "Stopping the running Hearth"
    !insertmacro StopHearth
  ${EndIf}
  File "/oname=hearth.exe" "${EXE}"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateShortcut "$SMPROGRAMS\Hearth.lnk" "$INSTDIR\hearth.exe" "tray --start-daemon" "$INSTDIR\hearth.exe" 0 SW_SHOWNORMAL "" "Hearth, your own Matrix homeserver"

  ; At login, through the Run key: the daemon by Hearth's own entry
  ; ('hearth service install' writes Run\Hearth with the data dir and its
  ; log file, the one 'hearth service uninstall' removes), and the tray
  ; beside it.
  nsExec::ExecToLog '"$INSTDIR\hearth.exe" service install --files-only'
  Pop $0
  ${If} $0 != 0
    DetailPrint "hearth service install failed ($0): Hearth will not start at login"
  ${EndIf}
  WriteRegStr HKCU "${RUN_KEY}" "Hearth Tray" '"$INSTDIR\hearth.exe" tray --start-daemon'

  ; Apps & features lists per-user programs from HKCU's Uninstall key.
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "Hearth"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "Hearth"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\hearth.exe,0"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "EstimatedSize" ${SIZEKB}
SectionEnd

; StartHearth starts the daemon (detached, as its Run entry would) and the
; tray, then opens the console once the daemon answers: 'hearth open'
; exits 4 until the control API is up (a first start makes keys and the
; owner's account first), so it is retried for up to 30 s.
Function StartHearth
  Exec '"$INSTDIR\hearth.exe" service start'
  Exec '"$INSTDIR\hearth.exe" tray'
  StrCpy $1 0
  ${Do}
    ; ExecWait, not nsExec: nsExec hides the window of what it starts,
    ; and the browser that 'hearth open' starts must show. hearth.exe is
    ; a GUI program: no console window flashes.
    ExecWait '"$INSTDIR\hearth.exe" open' $0
    ${If} $0 == 0
      ${Break}
    ${EndIf}
    IntOp $1 $1 + 1
    ${If} $1 >= 60
      MessageBox MB_ICONEXCLAMATION "Hearth did not answer yet. Open it later from its tray icon (Open Hearth) or the Start menu." /SD IDOK
      ${Break}
    ${EndIf}
    Sleep 500
  ${Loop}
FunctionEnd

Section "Uninstall"
  ; The daemon's Run entry goes, and the daemon stops, through Hearth
  ; itself; then the tray's entry, and the tray.
  nsExec::ExecToLog '"$INSTDIR\hearth.exe" service uninstall'
  Pop $0
  DeleteRegValue HKCU "${RUN_KEY}" "Hearth Tray"
  !insertmacro StopHearth
  ${If} ${FileExists} "$INSTDIR\hearth.exe"
    ; Still running (a Hearth this uninstaller could not stop): remove
    ; nothing, put the login entries back, and say what to do.
    nsExec::Exec '"$INSTDIR\hearth.exe" service install --files-only'
    Pop $0
    WriteRegStr HKCU "${RUN_KEY}" "Hearth Tray" '"$INSTDIR\hearth.exe" tray --start-daemon'
    MessageBox MB_ICONSTOP "Hearth is still running. Choose Stop Hearth and then Quit in its tray menu, and uninstall again. Nothing was removed." /SD IDOK
    Abort "Hearth is still running: nothing was removed."
  ${EndIf}
  Delete "$SMPROGRAMS\Hearth.lnk"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  DeleteRegKey HKCU "${UNINST_KEY}"
  ; The data dir (the account, rooms and keys) is the user's: it stays.
  DetailPrint "Your Hearth data stays in $APPDATA\Hearth; delete that folder to remove it too."
SectionEnd
