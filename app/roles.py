"""Roles and their permissions (design.md §3), defined in code and applied by `crm init`.

Screens and the generated API share one permission per resource and verb (FAB's
`method_permission_name`), so a role's rights read the same in the Security screens as
here. Row-level scope is separate: see app/scope.py.
"""

from app.scope import ADMIN, COMPLIANCE, MANAGER, SALES

READ, ADD, EDIT, DELETE = "can_read", "can_add", "can_edit", "can_delete"
DECIDE, RECALL = "can_decide", "can_recall"

# Verbs of FAB's ModelView and ModelRestApi mapped onto the four shared permissions.
VIEW_METHOD_PERMISSIONS = {
    "list": "read",
    "show": "read",
    "download": "read",
    "api": "read",
    "api_read": "read",
    "api_get": "read",
    "api_column_add": "add",
    "api_column_edit": "edit",
    "api_readvalues": "read",
    "add": "add",
    "api_create": "add",
    "edit": "edit",
    "api_update": "edit",
    "delete": "delete",
    "api_delete": "delete",
    "action": "read",
    "action_post": "read",
}
API_METHOD_PERMISSIONS = {
    "get_list": "read",
    "get": "read",
    "info": "read",
    "post": "add",
    "put": "edit",
    "delete": "delete",
}

# Resource names (FAB view-menus) shared by screens and APIs.
CUSTOMER, MEETING, TASK, APPROVAL = "Customer", "Meeting", "Task", "ApprovalRequest"
NOTIFICATION, AUDIT = "Notification", "AuditLog"
#: Meeting-note screening: its queue of flags and its phrase rules (app/services/screening.py).
SCREENING, SCREENING_RULE = "MeetingFlag", "ScreeningRule"
#: The Compliance dashboard (stale cards, flags, elderly cases, reasons and trends).
COMPLIANCE_DASHBOARD = "ComplianceDashboard"
#: imports: the import screen and /api/imports; what each row writes needs its kind's own permission too.
IMPORT = "Import"
# The product master (app/services/products.py): everyone reads it, Compliance maintains it.
PRODUCT = "Product"

ROLE_PERMISSIONS = {
    SALES: {
        CUSTOMER: [READ, ADD, EDIT],
        MEETING: [READ, ADD, EDIT, DELETE],
        TASK: [READ, ADD, EDIT, DELETE],
        APPROVAL: [READ, ADD, RECALL],
        NOTIFICATION: [READ, EDIT, DELETE],
        IMPORT: [READ, ADD],
        PRODUCT: [READ],
    },
    MANAGER: {
        CUSTOMER: [READ, EDIT],
        MEETING: [READ, EDIT],
        TASK: [READ, EDIT],
        APPROVAL: [READ, DECIDE],
        NOTIFICATION: [READ, EDIT, DELETE],
        AUDIT: [READ],
        SCREENING: [READ],
        COMPLIANCE_DASHBOARD: [READ],
        PRODUCT: [READ],
    },
    COMPLIANCE: {
        CUSTOMER: [READ],
        MEETING: [READ],
        TASK: [READ],
        APPROVAL: [READ, DECIDE],
        NOTIFICATION: [READ, EDIT, DELETE],
        AUDIT: [READ],
        SCREENING: [READ, DECIDE],
        SCREENING_RULE: [READ, ADD, EDIT, DELETE],
        COMPLIANCE_DASHBOARD: [READ],
        PRODUCT: [READ, ADD, EDIT],
    },
}

# Every signed-in role may see and edit its own profile and password.
SELF_SERVICE = [
    ("can_userinfo", "UserDBModelView"),
    ("resetmypassword", "UserDBModelView"),
    ("can_this_form_get", "ResetMyPasswordView"),
    ("can_this_form_post", "ResetMyPasswordView"),
    ("can_this_form_get", "UserInfoEditView"),
    ("can_this_form_post", "UserInfoEditView"),
    ("can_get", "OpenApi"),
    ("can_show", "SwaggerView"),
    # --- find: each user's own saved views of the lists (app/services/saved_views.py) ---
    ("can_read", "SavedView"),
    ("can_add", "SavedView"),
    ("can_delete", "SavedView"),
    ("menu_access", "Saved views"),
    # --- reports: each user's own Excel / PDF reports (app/services/reports.py) ---
    ("can_read", "Report"),
    ("can_add", "Report"),
    ("menu_access", "Reports"),
]

# Menu entries opened by a read permission on a resource.
MENU_FOR_RESOURCE = {
    CUSTOMER: ["Customers", "Sales"],
    MEETING: ["Meetings", "Sales", "Calendar"],
    TASK: ["Tasks", "Sales"],
    APPROVAL: ["Approval Requests", "Approvals", "Approvals Board"],  # board: the approvals board
    NOTIFICATION: ["Notifications"],
    AUDIT: ["Audit Log", "Admin"],
    SCREENING: ["Screening queue", "Compliance"],
    SCREENING_RULE: ["Screening rules", "Compliance"],
    COMPLIANCE_DASHBOARD: ["Compliance dashboard", "Compliance"],
    IMPORT: ["Imports", "Sales"],
    PRODUCT: ["Products", "Approvals"],
}
ROLES = (ADMIN, MANAGER, SALES, COMPLIANCE)

# The seed's role codes: `user.role` under /api (its frontend compares `role === 'COMPLIANCE'`).
# FAB's screens and /api/v1 keep the role names above. A user holding several roles answers
# the first of this order (the widest rights first).
API_ROLE_CODES = {ADMIN: "ADMIN", MANAGER: "MANAGER", COMPLIANCE: "COMPLIANCE", SALES: "SALES"}
# Codes (and the seed's USER, a sales rep) accepted where /api takes a role, case-insensitive.
ROLES_BY_CODE = {**{code: name for name, code in API_ROLE_CODES.items()}, "USER": SALES}


def api_role_code(name):
    """The /api code of the FAB role `name`: the seed's code, else the name in capitals."""
    return API_ROLE_CODES.get(name) or name.upper().replace(" ", "_")


def api_role_codes(names):
    """The /api codes of the role names `names`, the main role (`API_ROLE_CODES` order) first."""
    rank = {name: i for i, name in enumerate(API_ROLE_CODES)}
    return [api_role_code(n) for n in sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))]


def api_role(names):
    """The seed's code of a user's main role (`user.role` under /api), None without a role."""
    codes = api_role_codes(names)
    return codes[0] if codes else None


def role_permission_pairs(role):
    """Return the (permission, view-menu) pairs a non-Admin role holds."""
    pairs = set(SELF_SERVICE)
    for resource, perms in ROLE_PERMISSIONS.get(role, {}).items():
        pairs.update((perm, resource) for perm in perms)
        if READ in perms:
            pairs.update(("menu_access", menu) for menu in MENU_FOR_RESOURCE.get(resource, []))
    # Approval inboxes are their own menus.
    if DECIDE in ROLE_PERMISSIONS.get(role, {}).get(APPROVAL, []):
        pairs.add(("menu_access", "Pending My Decision"))
    if ADD in ROLE_PERMISSIONS.get(role, {}).get(APPROVAL, []):
        pairs.add(("menu_access", "My Requests"))
    return pairs


def sync_roles(appbuilder):
    """Create or update every role so its permissions match this module exactly."""
    sm = appbuilder.sm
    # FAB grants every permission it creates to the Admin role, so that role must exist first.
    if sm.find_role(ADMIN) is None:
        sm.add_role(ADMIN)
    appbuilder.add_permissions(update_perms=True)
    every_pair = set()
    for role in ROLES:
        every_pair |= role_permission_pairs(role)
    for perm, view in every_pair:
        sm.add_permission_view_menu(perm, view)
    for resource in (CUSTOMER, MEETING, TASK, APPROVAL, NOTIFICATION, AUDIT, SCREENING_RULE, IMPORT):
        for perm in (READ, ADD, EDIT, DELETE):
            sm.add_permission_view_menu(perm, resource)
    sm.add_permission_view_menu(DECIDE, APPROVAL)
    sm.add_permission_view_menu(RECALL, APPROVAL)
    sm.add_permission_view_menu(READ, SCREENING)
    sm.add_permission_view_menu(DECIDE, SCREENING)
    sm.add_permission_view_menu(READ, COMPLIANCE_DASHBOARD)

    session = sm.session
    all_pvs = session.query(sm.permissionview_model).all()
    by_pair = {(pv.permission.name, pv.view_menu.name): pv for pv in all_pvs}
    for role_name in ROLES:
        role = sm.find_role(role_name) or sm.add_role(role_name)
        if role_name == ADMIN:
            role.permissions = list(all_pvs)
        else:
            wanted = role_permission_pairs(role_name)
            role.permissions = [by_pair[p] for p in sorted(wanted) if p in by_pair]
    public = sm.find_role(sm.auth_role_public) or sm.add_role(sm.auth_role_public)
    public.permissions = []
    session.commit()
