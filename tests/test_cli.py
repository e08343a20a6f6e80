"""The `crm` commands: create-user and seed-demo."""

from models import ApprovalRequest, ApprovalStatus, Customer, Meeting, Task


def test_create_user_command(app, db):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["crm", "create-user", "--email", "Cli.User@Example.com", "--name", "山田 太郎", "--role", "Manager", "--password", "long-enough-1"]
    )
    assert result.exit_code == 0, result.output
    user = app.appbuilder.sm.find_user(email="cli.user@example.com")
    assert user is not None and [r.name for r in user.roles] == ["Manager"]
    again = runner.invoke(
        args=["crm", "create-user", "--email", "cli.user@example.com", "--name", "x", "--role", "Manager", "--password", "long-enough-1"]
    )
    assert again.exit_code != 0 and "already exists" in again.output


def test_create_user_rejects_bad_input(app):
    runner = app.test_cli_runner()
    short = runner.invoke(args=["crm", "create-user", "--email", "a@b.jp", "--name", "A", "--role", "Sales", "--password", "short"])
    assert short.exit_code != 0 and "at least 8" in short.output
    role = runner.invoke(args=["crm", "create-user", "--email", "a@b.jp", "--name", "A", "--role", "Boss", "--password", "long-enough"])
    assert role.exit_code != 0 and "Boss" in role.output


def test_create_user_prompts_for_password(app):
    result = app.test_cli_runner().invoke(
        args=["crm", "create-user", "--email", "prompted@example.com", "--name", "P", "--role", "Sales"],
        input="prompted-pass\nprompted-pass\n",
    )
    assert result.exit_code == 0, result.output
    assert app.appbuilder.sm.auth_user_db("prompted@example.com", "prompted-pass") is not None


def test_seed_demo_creates_users_and_realistic_data(app, db):
    before = db.session.query(Customer).count()
    result = app.test_cli_runner().invoke(args=["crm", "seed-demo", "--customers", "12"])
    assert result.exit_code == 0, result.output
    for email in ("admin@example.com", "manager@example.com", "compliance@example.com", "sales@example.com"):
        assert email in result.output
        assert app.appbuilder.sm.find_user(email=email) is not None
    db.session.expire_all()
    # 12 demo customers, plus the lead the USER_CREATED reaction makes for each demo user.
    assert db.session.query(Customer).count() == before + 12 + 5
    names = [c.name for c in db.session.query(Customer).filter(Customer.name.like("株式会社%")).all()]
    assert names and all(n.startswith("株式会社") for n in names)
    assert db.session.query(Meeting).count() >= 12 and db.session.query(Task).count() >= 12
    statuses = {r.status for r in db.session.query(ApprovalRequest).all()}
    assert statuses == set(ApprovalStatus)
    # Second run with --if-empty does nothing.
    again = app.test_cli_runner().invoke(args=["crm", "seed-demo", "--if-empty"])
    assert again.exit_code == 0 and "not seeded" in again.output
